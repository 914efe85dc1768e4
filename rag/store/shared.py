"""Collections shared within a process: one open store per collection, reference-counted.

An embedded collection is locked by the process that opens it (``rag.store.files.DirLock``),
so a second ``open_store`` of the same collection in the same process is refused. That is
right for two *processes*, but within one process it is normal to build several LangChain
retrievers, vector stores or pipelines over the same knowledge base (LangChain's standard
tests build one per test; an application builds one per chain). :func:`open_shared` hands
each of them a :class:`SharedStore`: a handle on the one open store of that collection,
which is closed when the last handle is. A server collection is shared the same way, so
that a ``url: ":memory:"`` collection opened twice is the same data.

Calls through the handles are serialised by one lock per collection: LangChain runs
``abatch``/``ainvoke`` in worker threads, and the embedded engine's objects are not meant
to be used from several threads at once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from ret2vqa.errors import StoreError

from .base import CollectionMetadata, VectorStore, check_compatible
from .config import StoreConfig

__all__ = ["SharedStore", "open_shared", "shared_count"]

_REGISTRY_LOCK = threading.Lock()
_OPEN: dict[tuple, "_Entry"] = {}


class _Entry:
    def __init__(self, store: VectorStore):
        self.store = store
        self.refs = 0
        self.lock = threading.RLock()


def _key(config: StoreConfig, client: Any = None) -> tuple:
    """What identifies a collection in this process: its directory, or its server (and client) and name."""
    if config.backend == "edge":
        return ("edge", str((Path(config.path).expanduser() / config.collection).resolve()))
    return (config.backend, config.url, config.collection, None if client is None else id(client))


def open_shared(config: StoreConfig, expect: CollectionMetadata | None = None, create: bool = False,
                **kwargs: Any) -> "SharedStore":
    """A handle on the collection of ``config``, opening it unless this process already has it open.

    The arguments are those of :func:`rag.store.open_store`. A collection already open is
    still checked against ``expect`` (another encoder is refused the same way).
    """
    from . import open_store

    key = _key(config, kwargs.get("client"))
    with _REGISTRY_LOCK:
        entry = _OPEN.get(key)
        if entry is None:
            entry = _Entry(open_store(config, expect=expect, create=create, **kwargs))
            _OPEN[key] = entry
        elif expect is not None:
            check_compatible(entry.store.metadata, expect, config.describe())
        entry.refs += 1
    return SharedStore(key, entry)


def shared_count(config: StoreConfig, client: Any = None) -> int:
    """How many open handles this process holds on the collection of ``config`` (0: not open)."""
    with _REGISTRY_LOCK:
        entry = _OPEN.get(_key(config, client))
        return entry.refs if entry is not None else 0


def _release(key: tuple, entry: _Entry) -> None:
    with _REGISTRY_LOCK:
        entry.refs -= 1
        if entry.refs > 0:
            return
        if _OPEN.get(key) is entry:
            del _OPEN[key]
    with entry.lock:
        entry.store.close()


class SharedStore:
    """A handle on a shared open store: every :class:`~rag.store.VectorStore` operation, serialised.

    :meth:`close` releases this handle only; the collection closes with its last handle.
    Use it as a context manager, like the store itself.
    """

    def __init__(self, key: tuple, entry: _Entry):
        self._key = key
        self._entry: _Entry | None = entry

    @property
    def store(self) -> VectorStore:
        """The underlying open store (shared: do not close it directly)."""
        if self._entry is None:
            raise StoreError("this store handle is closed")
        return self._entry.store

    @property
    def closed(self) -> bool:
        return self._entry is None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_key", "_entry"):
            raise AttributeError(name)
        entry = self._entry
        if entry is None:
            raise StoreError(f"this store handle is closed (cannot use {name!r})")
        value = getattr(entry.store, name)
        if not callable(value):
            return value
        return _serialised(value, entry.lock)

    def close(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            _release(self._key, entry)

    def __enter__(self) -> "SharedStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._entry is None else f"{self._entry.refs} handle(s)"
        return f"SharedStore({self._key[1]!r}, {state})"


def _serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    call.__name__ = getattr(method, "__name__", "call")
    call.__doc__ = getattr(method, "__doc__", None)
    return call
