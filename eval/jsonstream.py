"""Streaming the items of one huge top-level JSON object (or array) without loading it whole.

The E-VQA knowledge base (``encyclopedic_kb_wiki.json``, ~14 GB) and some InfoSeek
100K variants are a *single* JSON value ``{key: entry, ...}``; ``json.load`` on them
needs tens of GB of RAM. :func:`iter_json_items` reads the file in chunks and decodes
one ``key: value`` pair at a time with the C-accelerated
:meth:`json.JSONDecoder.raw_decode`, so memory stays at about one entry plus one chunk
and no dependency beyond the standard library is needed.

Error policy, in line with :mod:`ret2vqa.io`:

* a JSON *syntax* error inside the stream cannot be skipped reliably (there is no
  safe way to find where the next entry starts), so it always raises
  :class:`~ret2vqa.io.RowError` naming the file, line and character offset;
* a file cut short (e.g. an interrupted unzip) is reported through ``errors`` once
  every complete entry before the cut has been yielded; strict mode (the default)
  raises, lenient mode logs and counts it;
* schema checks of the entries themselves are the caller's job (see
  :func:`eval.evqa.iter_kb`, :func:`eval.infoseek.iter_wiki_kb`).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from ret2vqa.errors import MissingFileError
from ret2vqa.io import MalformedRows, RowError, Utf8Reader, open_text

_WS = re.compile(r"[ \t\n\r]*")
# What a JSON text cut at the end of the buffer leaves after the decoder's error position:
# part of a literal, a number's '.', exponent, or a \uXXXX escape.
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
_CUT_TAIL = re.compile(r"\.|[eE][-+]?|u[0-9a-fA-F]{0,4}")


def _looks_cut(buf: str, exc: json.JSONDecodeError) -> bool:
    """Whether a decode error just means the buffer ends too early (more text could fix it)."""
    if exc.msg.startswith("Unterminated string"):
        return True
    tail = buf[exc.pos :]
    if not tail.strip():
        return True
    return any(literal.startswith(tail) for literal in _LITERALS) or bool(_CUT_TAIL.fullmatch(tail))


class _Truncated(Exception):
    """The file ends in the middle of a value."""


@dataclass(frozen=True)
class JsonItem:
    """One member of the top-level container: ``key`` (str for objects, int index for arrays)."""

    key: str | int
    value: Any
    line: int
    offset: int


def open_json_text(path: str | Path) -> IO[str]:
    """Open ``.json``, ``.json.gz`` or a ``.zip`` holding exactly one ``.json`` member, as text.

    Reading the official ``encyclopedic_kb_wiki.zip`` directly saves unpacking 14 GB.
    """
    path = Path(path)
    if path.suffix.lower() != ".zip":
        return open_text(path)
    if not path.is_file():
        raise MissingFileError(path)
    archive = zipfile.ZipFile(path)
    members = [m for m in archive.namelist() if m.lower().endswith(".json") and not m.startswith("__MACOSX/")]
    if len(members) != 1:
        archive.close()
        raise RowError(path, None, f"expected exactly one .json member in the zip archive, found {members}")
    return Utf8Reader(archive.open(members[0]), f"{path}:{members[0]}")


class _Reader:
    """A growing text buffer over a file handle, tracking the line number of ``pos``."""

    def __init__(self, fh: IO[str], chunk_size: int):
        self.fh = fh
        self.chunk_size = chunk_size
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1
        self.consumed = 0  # characters dropped from the front of ``buf``

    @property
    def offset(self) -> int:
        return self.consumed + self.pos

    def read_more(self, at_least: int = 0) -> bool:
        """Append one chunk (or ``at_least`` characters); drop what is already parsed. False at EOF."""
        if self.eof:
            return False
        if self.pos:
            self.consumed += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        data = self.fh.read(max(self.chunk_size, at_least))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def advance(self, new_pos: int) -> None:
        self.line += self.buf.count("\n", self.pos, new_pos)
        self.pos = new_pos

    def skip_ws(self) -> bool:
        """Move past whitespace; False when the file ends first."""
        while True:
            self.advance(_WS.match(self.buf, self.pos).end())
            if self.pos < len(self.buf):
                return True
            if not self.read_more():
                return False

    def peek(self) -> str:
        return self.buf[self.pos]

    def line_at(self, pos: int) -> int:
        return self.line + self.buf.count("\n", self.pos, pos)


def iter_json_items(
    path: str | Path,
    errors: MalformedRows | None = None,
    chunk_size: int = 1 << 20,
    max_value_chars: int = 1 << 30,
) -> Iterator[JsonItem]:
    """Yield each member of the top-level JSON object (``key``) or array (index) of ``path``.

    ``path`` may be ``.json``, ``.json.gz`` or a single-member ``.zip``. ``errors``
    receives a truncated file or trailing garbage (strict when ``None``); syntax errors
    always raise :class:`RowError`. ``max_value_chars`` bounds the size of one member so
    a corrupt file fails instead of filling memory.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    decoder = json.JSONDecoder()
    with open_json_text(path) as fh:
        r = _Reader(fh, chunk_size)

        def syntax_error(message: str, pos: int | None = None) -> RowError:
            pos = r.pos if pos is None else pos
            return RowError(path, r.line_at(pos), f"{message} (character {r.consumed + pos})")

        def decode() -> Any:
            """Decode the JSON value starting at ``r.pos`` and move past it."""
            while True:
                try:
                    value, end = decoder.raw_decode(r.buf, r.pos)
                except json.JSONDecodeError as exc:
                    if not _looks_cut(r.buf, exc):
                        raise syntax_error(f"invalid JSON: {exc.msg}", exc.pos) from None
                    if r.eof:
                        raise _Truncated() from None
                    _grow()
                    continue
                if end == len(r.buf):  # a number may continue in the next chunk
                    if not r.eof:
                        _grow()
                        continue
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        raise _Truncated()  # the file ends inside the container: this number may be cut
                r.advance(end)
                return value

        def _grow() -> None:
            if len(r.buf) - r.pos > max_value_chars:
                raise syntax_error(f"a single JSON member exceeds {max_value_chars} characters; the file looks corrupt")
            r.read_more(at_least=len(r.buf) - r.pos)  # doubling keeps re-decoding linear overall

        if not r.skip_ws():
            raise RowError(path, 1, "empty file: expected a JSON object or array")
        opener = r.peek()
        if opener not in "{[":
            raise syntax_error(f"expected a top-level JSON object or array, found {opener!r}")
        closer = "}" if opener == "{" else "]"
        r.advance(r.pos + 1)
        index = 0
        while True:
            if not r.skip_ws():
                errors.report(
                    path, r.line, f"unexpected end of file after {index} complete member(s): the file is truncated"
                )
                return
            char = r.peek()
            if char == closer:
                r.advance(r.pos + 1)
                break
            if index:
                if char != ",":
                    raise syntax_error(f"expected ',' or {closer!r} between members, found {char!r}")
                r.advance(r.pos + 1)
                if not r.skip_ws():
                    errors.report(
                        path, r.line, f"unexpected end of file after {index} complete member(s): the file is truncated"
                    )
                    return
            line, offset = r.line, r.offset
            if opener == "{":
                if r.peek() != '"':
                    raise syntax_error(f"expected a string key, found {r.peek()!r}")
                try:
                    key: str | int = decode()
                except _Truncated:
                    errors.report(path, line, "unexpected end of file inside a key: the file is truncated")
                    return
                if not r.skip_ws() or r.peek() != ":":
                    if r.eof and r.pos >= len(r.buf):
                        errors.report(
                            path, r.line, f"unexpected end of file inside member {key!r}: the file is truncated"
                        )
                        return
                    raise syntax_error(f"expected ':' after key {key!r}")
                r.advance(r.pos + 1)
                if not r.skip_ws():
                    errors.report(path, r.line, f"unexpected end of file inside member {key!r}: the file is truncated")
                    return
            else:
                key = index
            try:
                value = decode()
            except _Truncated:
                errors.report(path, line, f"unexpected end of file inside member {key!r}: the file is truncated")
                return
            yield JsonItem(key=key, value=value, line=line, offset=offset)
            index += 1
        if r.skip_ws():
            errors.report(
                path, r.line, f"unexpected data after the top-level JSON value: {r.buf[r.pos : r.pos + 20]!r}"
            )
