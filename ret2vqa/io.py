"""Reading data files row by row, with every malformed row reported by file and line.

Benchmarks and knowledge bases are large jsonl/csv files written by other people's
scripts. A bad row must never vanish silently: it either stops the run (strict mode)
or is reported with ``file:line`` and counted, so the summary at the end says exactly
what was skipped. :class:`MalformedRows` is that report; :func:`iter_jsonl` and
:func:`iter_csv` stream rows (``.gz`` included) with their line numbers.

Encoding: files are UTF-8. A UTF-8 byte-order mark (which Windows tools write) is
tolerated. Bytes that are not UTF-8 are reported with ``file:line``: in a jsonl file
the line is a malformed row like invalid JSON (skipped in lenient mode, an error in
strict mode); in any other text file read through :func:`open_text` they stop the
read with a :class:`RowError` naming the file and line, never a bare ``UnicodeDecodeError``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import MissingFileError, RowError

logger = logging.getLogger(__name__)

__all__ = ["RowError", "MalformedRows", "Utf8Reader", "open_binary", "open_text", "iter_jsonl", "iter_csv", "require_fields", "write_jsonl"]


@dataclass
class MalformedRows:
    """Collects malformed rows: raises on the first one when ``strict``, else logs and counts.

    ``max_logged`` bounds how many are logged individually (all are counted and the
    first ``max_kept`` are kept in :attr:`examples` for the final summary).
    """

    strict: bool = False
    max_logged: int = 20
    max_kept: int = 100
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def report(self, path: str | Path, line: int | None, message: str) -> None:
        err = RowError(path, line, message)
        if self.strict:
            raise err
        self.count += 1
        if len(self.examples) < self.max_kept:
            self.examples.append(str(err))
        if self.count <= self.max_logged:
            logger.warning("skipping malformed row: %s", err)
        elif self.count == self.max_logged + 1:
            logger.warning("more malformed rows follow; only the count is reported from now on")

    def add(self, err: RowError) -> None:
        """Report an already-built :class:`RowError`."""
        self.report(err.path, err.line, err.message)

    def summary(self) -> str:
        if not self.count:
            return "no malformed rows"
        head = "; ".join(self.examples[:3])
        more = f" (+{self.count - 3} more)" if self.count > 3 else ""
        return f"{self.count} malformed row(s) skipped: {head}{more}"


BOM = codecs.BOM_UTF8


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently gunzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file for reading (``*.gz`` gunzipped, a byte-order mark dropped, no
    newline translation); bytes that are not UTF-8 raise :class:`RowError` with the file and line."""
    return Utf8Reader(open_binary(path), path)


def undecodable(exc: UnicodeDecodeError, data: bytes) -> str:
    """What a :class:`RowError` says about bytes that are not UTF-8."""
    start = max(0, min(exc.start, len(data) - 1))
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return (f"not valid UTF-8 (byte 0x{data[start]:02x} at column {column}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")


class Utf8Reader(io.TextIOBase):
    """A read-only text stream over UTF-8 bytes that knows which line it is on.

    ``io.TextIOWrapper`` decodes in blocks, so its ``UnicodeDecodeError`` says "position
    21" of some block; this reader counts newlines as it decodes, so the error is a
    :class:`RowError` with ``file:line``. It drops a leading byte-order mark and supports
    what the project's readers use: iteration, :meth:`readline` and :meth:`read`.
    """

    def __init__(self, raw: IO[bytes], path: str | Path):
        self._raw = raw
        self.path = str(path)
        self._line = 1  # line number of the next byte to decode
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def readable(self) -> bool:
        return True

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            pending = max(0, len(exc.object) - len(data))  # bytes held back from the previous read
            at = max(0, exc.start - pending)
            raise RowError(self.path, self._line + data.count(b"\n", 0, at), undecodable(exc, exc.object)) from None
        self._line += data.count(b"\n")
        return text

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            return self._decode(self._raw.read(), True)
        parts: list[str] = []
        got = 0
        while got < size:  # bytes >= characters, so reading what is missing never overshoots
            data = self._raw.read(max(size - got, 1))
            text = self._decode(data, not data)
            parts.append(text)
            got += len(text)
            if not data:
                break
        return "".join(parts)

    def readline(self, size: int | None = -1) -> str:
        while True:
            data = self._raw.readline() if size is None or size < 0 else self._raw.readline(size)
            text = self._decode(data, not data)
            if text or not data:
                return text

    def __iter__(self) -> "Utf8Reader":
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def iter_jsonl(
    path: str | Path, errors: MalformedRows | None = None, start_line: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a jsonl file.

    Lines that are not JSON objects, or not UTF-8, are reported to ``errors`` (strict when
    ``None``); a byte-order mark before the first line is ignored. ``start_line`` skips
    lines before it (cheaply, without parsing), for resuming.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    with open_binary(path) as fh:
        for lineno, data in enumerate(fh, start=1):
            if lineno < start_line:
                continue
            if lineno == 1 and data.startswith(BOM):
                data = data[len(BOM):]
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                errors.report(path, lineno, undecodable(exc, data))
                continue
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.report(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                errors.report(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj


def iter_csv(path: str | Path, errors: MalformedRows | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each record of a CSV file with a header row.

    ``line_number`` is the physical line where the record starts (the header is line 1),
    so quoted multi-line fields keep numbers right. Records with the wrong number of
    fields are reported to ``errors`` (strict when ``None``).
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise RowError(path, 1, "empty CSV file: no header row") from None
        start = reader.line_num + 1
        for record in reader:
            lineno = start
            start = reader.line_num + 1
            if not record or record == [""]:
                continue
            if len(record) != len(header):
                errors.report(path, lineno, f"expected {len(header)} fields, got {len(record)}")
                continue
            yield lineno, dict(zip(header, record))


def require_fields(row: dict[str, Any], fields: tuple[str, ...] | list[str], path: str | Path, line: int) -> None:
    """Raise :class:`RowError` naming the first field of ``fields`` missing from ``row``."""
    for name in fields:
        if name not in row or row[name] is None:
            raise RowError(path, line, f"missing field '{name}'")


def write_jsonl(path: str | Path, rows, append: bool = False) -> int:
    """Write dict rows as jsonl (UTF-8, one object per line); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
