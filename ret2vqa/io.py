"""Reading data files row by row, with every malformed row reported by file and line.

Benchmarks and knowledge bases are large jsonl/csv files written by other people's
scripts. A bad row must never vanish silently: it either stops the run (strict mode)
or is reported with ``file:line`` and counted, so the summary at the end says exactly
what was skipped. :class:`MalformedRows` is that report; :func:`iter_jsonl` and
:func:`iter_csv` stream rows (``.gz`` included) with their line numbers.
"""

from __future__ import annotations

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

__all__ = ["RowError", "MalformedRows", "open_text", "iter_jsonl", "iter_csv", "require_fields", "write_jsonl"]


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


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading, transparently gunzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def iter_jsonl(
    path: str | Path, errors: MalformedRows | None = None, start_line: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a jsonl file.

    Lines that are not JSON objects are reported to ``errors`` (strict when ``None``).
    ``start_line`` skips lines before it (cheaply, without parsing), for resuming.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno < start_line:
                continue
            text = raw.strip()
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
