"""Small durable-file helpers for the embedded store: atomic JSON writes and a process lock.

A progress or metadata file must never be half-written when the process is killed:
:func:`write_json_atomic` writes a temporary file in the same directory, fsyncs it and
renames it over the target (``os.replace`` is atomic on POSIX and Windows), so a reader
sees either the old or the new content. :class:`DirLock` keeps two processes from
opening the same on-disk collection at once; the OS releases it when the holder dies,
even on ``kill -9``, so a crashed build never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ret2vqa.errors import StoreError, StoreLockedError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, best effort
    fcntl = None  # type: ignore[assignment]


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that a crash leaves either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`write_json_atomic`; raises :class:`StoreError` naming it if damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: damaged JSON ({exc}); the collection's files are corrupted") from exc


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirLock:
    """An exclusive, non-blocking advisory lock on ``directory/.lock`` (held until :meth:`release`)."""

    def __init__(self, directory: str | Path, what: str):
        self.path = Path(directory) / ".lock"
        self.what = what
        self._fh = None

    def acquire(self) -> "DirLock":
        """Take the lock, or raise :class:`StoreLockedError` naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip()
                fh.close()
                raise StoreLockedError(self.what, int(holder) if holder.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
