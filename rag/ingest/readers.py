"""Knowledge-base readers: stream passages out of the KB files researchers actually have.

=========  ================================================  =====================================
format     file                                              passages
=========  ================================================  =====================================
evqa       E-VQA ``encyclopedic_kb_wiki.json`` (``{url:      one per section, ``title - section``
           entry}``, 14 GB; ``.json``/``.gz``/``.zip``)      prefixed; reference/external-link and
                                                             empty sections skipped
infoseek   InfoSeek ``Wiki6M_ver_1_0.jsonl(.gz)`` / Wiki100K  ``wikipedia_content`` cut into
           jsonl (``wikidata_id``, ``wikipedia_title``,      ``chunk_tokens``-word passages,
           ``wikipedia_content``, ``wikipedia_image_url``)    title prefixed
m2kr       ReT-M2KR passages jsonl (``passage_id``,          one per row
           ``passage_text``, ``passage_image_path``), or
           the M2KR dataset's ``<Task>_passages`` parquet
mbeir      M-BEIR candidate pool jsonl (``did``, ``txt``,     one per candidate, with its image
           ``img_path``, ``modality``)
jsonl      generic jsonl (``id``, ``text``, optional         one per row; ``metadata`` fields are
           ``image``, optional ``metadata`` object)          copied into the payload
=========  ================================================  =====================================

Every reader streams (constant memory) and is deterministic, which is what makes
indexing resumable: a :class:`Position` (a seekable record key and the number of that
record's passages already consumed) is all a resumed run needs. For jsonl files the
record key is the line number, so resuming skips lines without parsing them. Raw
record parsing is done once per format, by the evaluation loaders
(:func:`eval.evqa.kb.iter_kb`) or :func:`ret2vqa.io.iter_jsonl`; this module turns
records into passages.

Malformed records are reported to a :class:`ret2vqa.io.MalformedRows` with
``file:line`` and skipped (or fatal in strict mode); sections skipped on purpose
(empty, references) are counted separately in :attr:`KBReader.skipped`.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import logging
import os
import posixpath
import urllib.parse
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

from ret2vqa.errors import ConfigError, MissingFileError
from ret2vqa.io import MalformedRows, RowError, iter_jsonl
from ret2vqa.passage import Passage

from .config import IngestConfig
from .passages import bound_text, chunk_words

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Position:
    """Where a passage sits in its KB: record key (line number or item index) and chunk index."""

    record: int
    chunk: int

    def to_dict(self) -> dict[str, int]:
        return {"record": self.record, "chunk": self.chunk}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Position":
        return cls(int(data["record"]), int(data["chunk"]))


class _QuietWhileSkipping(MalformedRows):
    """Forwards reports to ``target`` except while records before the resume point are re-read.

    Those were reported (and counted) by the run that consumed them.
    """

    def __init__(self, target: MalformedRows):
        super().__init__(strict=target.strict)
        self.target = target
        self.skipping = False

    def report(self, path, line, message) -> None:  # type: ignore[override]
        if not self.skipping:
            self.target.report(path, line, message)


class KBReader(abc.ABC):
    """Streams :class:`Passage` objects with their :class:`Position` out of one KB file."""

    format: ClassVar[str]
    #: Payload field naming the entity/article, indexed as a keyword for filtered search.
    key_field: ClassVar[str | None] = None
    #: Whether :attr:`Position.record` is a line number (else an item index).
    record_is_line: ClassVar[bool] = True

    def __init__(self, path: str | Path, config: IngestConfig, errors: MalformedRows | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingFileError(self.path, "knowledge-base file")
        self.config = config
        self.errors = errors if errors is not None else MalformedRows(strict=config.strict)
        self.skipped: Counter[str] = Counter()

    # What subclasses provide ------------------------------------------------------------

    @abc.abstractmethod
    def _records(self, start: int, errors: MalformedRows) -> Iterator[tuple[int, int | None, Any]]:
        """Yield ``(record_key, line, raw)`` from record key ``start`` on (keys increase)."""

    @abc.abstractmethod
    def _passages(self, raw: Any, line: int | None) -> list[Passage]:
        """The passages of one record; raise :class:`RowError` if the record is malformed."""

    def count_records(self) -> int | None:
        """How many records the file holds (for the progress bar's ETA), or ``None`` if unknown."""
        return _count_lines(self.path)

    @staticmethod
    def _items_from(start: int, errors: MalformedRows,
                    read: Callable[[MalformedRows], Iterator[Any]]) -> Iterator[tuple[int, Any]]:
        """``(index, item)`` of an item-indexed KB (one json document) from item ``start`` on.

        ``read(errors)`` streams the items; rows it reports before ``start`` were reported by
        the run that consumed them, so they are re-read quietly.
        """
        gate = _QuietWhileSkipping(errors)
        gate.skipping = start > 0
        for index, item in enumerate(read(gate)):
            if index < start:
                continue
            gate.skipping = False
            yield index, item

    # The stream -------------------------------------------------------------------------

    def passages(self, start: Position | None = None) -> Iterator[tuple[Passage, Position]]:
        """Yield ``(passage, position)`` in file order, from ``start`` (inclusive) on."""
        start = start or Position(self._first_record(), 0)
        for key, line, raw in self._records(start.record, self.errors):
            resumed_inside = key == start.record and start.chunk > 0
            before = self.skipped.copy() if resumed_inside else None
            try:
                passages = self._passages(raw, line)
            except RowError as err:
                self.errors.add(err)
                continue
            if resumed_inside:  # this record's skips were counted by the run that started it
                self.skipped = before
            first = start.chunk if key == start.record else 0
            for index in range(first, len(passages)):
                yield passages[index], Position(key, index)

    def _first_record(self) -> int:
        return 1 if self.record_is_line else 0

    def source_key(self) -> dict[str, Any]:
        """Identifies this KB and the passage options; a resumed run must match it."""
        stat = self.path.stat()
        return {
            "format": self.format,
            "path": str(self.path.resolve()),
            "size": stat.st_size,
            "options": self.config.passage_options(),
        }

    def source_hash(self) -> str:
        key = repr(sorted(self.source_key().items())).encode()
        return hashlib.sha256(key).hexdigest()[:16]

    # Helpers ------------------------------------------------------------------------------

    def _text(self, title: str, body: str, section_title: str | None = None) -> str:
        if not self.config.title_prefix or not title:
            return body
        prefix = title if not section_title or section_title.strip() == title.strip() else f"{title} - {section_title}"
        return f"{prefix}. {body}"

    def _bounded(self, text: str, line: int | None, what: str) -> str:
        """``text`` within ``ingest.max_text_chars``; a longer one is cut, logged with file:line and counted."""
        limit = self.config.max_text_chars
        if len(text) <= limit:
            return text
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        logger.warning("%s: %s has %s characters, over ingest.max_text_chars (%s): cut to its first %s",
                       where, what, f"{len(text):,}", f"{limit:,}", f"{limit:,}")
        self.skipped["texts cut to ingest.max_text_chars"] += 1
        return bound_text(text, limit)

    def _payload(self, text: str, **fields: Any) -> dict[str, Any]:
        payload = {k: v for k, v in fields.items() if v is not None}
        if self.config.store_text:
            payload["text"] = text
        return payload

    def _image_file(self, relative: str | None) -> str | None:
        """A passage image path: absolute as is, else under ``image_root`` or the KB's directory."""
        if not relative:
            return None
        path = Path(relative)
        if path.is_absolute():
            return str(path)
        root = Path(self.config.image_root) if self.config.image_root else self.path.parent
        return str(root / path)

    def _templated_image(self, default_template: str, **fields: Any) -> str | None:
        """A local image for a URL-/entity-named image, when ``image_root`` is configured."""
        if not self.config.image_root:
            return None
        template = self.config.image_template or default_template
        try:
            name = template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{template!r}: unknown field {exc} (fields: {', '.join(sorted(fields))})", "ingest.image_template"
            ) from None
        return str(Path(self.config.image_root) / name) if name else None


def _filename(url: str | None) -> str:
    """The unquoted file-name part of an image URL (``.../File:Foo_bar.jpg`` -> ``Foo_bar.jpg``)."""
    if not url:
        return ""
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    return urllib.parse.unquote(name)


# ---------------------------------------------------------------------------------------
# E-VQA knowledge base
# ---------------------------------------------------------------------------------------


class EVQAReader(KBReader):
    """E-VQA KB json: one passage per kept section, ``"{title} - {section title}. {text}"``.

    Passage id ``"{url}#{section_index}"`` (``"...#{section_index}-{chunk}"`` when
    ``chunk_sections`` splits long sections). Payload: ``url``, ``title``,
    ``section_index``, ``section_title``, ``image_urls`` (the section's images),
    ``image_url`` (the article's lead image, encoded with the text when ``image_root``
    holds it; file chosen by ``image_template``, default ``{filename}``), ``text``.
    """

    format = "evqa"
    key_field = "url"
    record_is_line = False

    def _records(self, start: int, errors: MalformedRows) -> Iterator[tuple[int, int | None, Any]]:
        from eval.evqa.kb import iter_kb

        for index, (_url, entry) in self._items_from(start, errors, lambda gate: iter_kb(self.path, gate)):
            yield index, None, entry

    def _passages(self, entry: Any, line: int | None) -> list[Passage]:
        skip = [s.lower() for s in self.config.skip_sections]
        section_images: dict[int, list[str]] = {}
        for url, _caption, section in entry.images():
            if section is not None:
                section_images.setdefault(section, []).append(url)
        lead_url = entry.image_urls[0] if entry.image_urls else None
        image = self._templated_image("{filename}", filename=_filename(lead_url)) if lead_url else None
        out = []
        for index, section_title, body in entry.sections():
            body = self._bounded(body.strip(), line, f"article {entry.url} section {index}")
            if any(s in section_title.lower() for s in skip):
                self.skipped["reference/link sections"] += 1
                continue
            if len(body) < self.config.min_chars:
                self.skipped["empty sections"] += 1
                continue
            pieces = list(chunk_words(body, self.config.chunk_tokens)) if self.config.chunk_sections else [body]
            for chunk, piece in enumerate(pieces):
                text = self._text(entry.title, piece, section_title)
                pid = f"{entry.url}#{index}" if len(pieces) == 1 else f"{entry.url}#{index}-{chunk}"
                payload = self._payload(
                    text,
                    url=entry.url,
                    title=entry.title,
                    section_index=index,
                    section_title=section_title,
                    chunk_index=chunk if len(pieces) > 1 else None,
                    image_urls=section_images.get(index, []),
                    image_url=lead_url,
                    source="evqa",
                )
                out.append(Passage(id=pid, text=text, title=entry.title, image=image, payload=payload))
        return out

    def count_records(self) -> int | None:
        """Articles, estimated by counting the ``"section_titles"`` key (one per article; escaped
        quotes inside texts cannot match) in a single fast pass over the raw bytes."""
        return _count_pattern(self.path, b'"section_titles"')


# ---------------------------------------------------------------------------------------
# InfoSeek Wiki6M / Wiki100K
# ---------------------------------------------------------------------------------------


class InfoSeekReader(KBReader):
    """InfoSeek Wiki KB: ``wikipedia_content`` cut into ``chunk_tokens``-word passages.

    Wiki6M-style jsonl(.gz) (record key = line number, so resuming skips lines without
    parsing) or the Wiki100K json object (record key = item index). Records are
    validated by :func:`eval.infoseek.parse_wiki_entity`, the evaluation loader's parser.
    Passage id ``"{wikidata_id}#{chunk}"`` (the object key when a record has no
    ``wikidata_id``); each passage is prefixed ``"{title}. "``. Payload: ``wikidata_id``,
    ``title``, ``chunk_index``, ``image_url`` (``wikipedia_image_url``), ``url`` when
    present, ``text``. With ``image_root`` the entity image is encoded too (file from
    ``image_template``, default ``{wikidata_id}.jpg``; UniIR's layout is
    ``{wikidata_prefix}/{wikidata_id}.jpg``, with the id's first 4 characters).
    """

    format = "infoseek"
    key_field = "wikidata_id"

    def __init__(self, path: str | Path, config: IngestConfig, errors: MalformedRows | None = None):
        super().__init__(path, config, errors)
        from eval.infoseek.kb import kb_file_format

        self.record_is_line = kb_file_format(self.path) == "jsonl"

    def _records(self, start: int, errors: MalformedRows) -> Iterator[tuple[int, int | None, Any]]:
        from eval.infoseek.kb import iter_wiki_kb, parse_wiki_entity

        if self.record_is_line:
            for line, row in iter_jsonl(self.path, errors, start_line=start):
                try:
                    entity = parse_wiki_entity(row, None)
                except ValueError as exc:
                    errors.report(self.path, line, str(exc))
                    continue
                yield line, line, (entity.wikidata_id, entity)
            return
        for index, item in self._items_from(start, errors, lambda gate: iter_wiki_kb(self.path, gate)):
            yield index, None, item

    def count_records(self) -> int | None:
        if self.record_is_line:
            return _count_lines(self.path)
        return _count_pattern(self.path, b'"wikipedia_content"')

    def _passages(self, raw: Any, line: int | None) -> list[Passage]:
        key, entity = raw
        qid = entity.wikidata_id
        pid_base = qid or key
        title = entity.wikipedia_title
        image_url = entity.wikipedia_image_url or None
        image = self._templated_image(
            "{wikidata_id}.jpg", wikidata_id=pid_base, wikidata_prefix=pid_base[:4], filename=_filename(image_url)
        )
        out = []
        content = self._bounded(entity.wikipedia_content, line, f"entity {pid_base}: wikipedia_content")
        for chunk, piece in enumerate(chunk_words(content, self.config.chunk_tokens)):
            if len(piece) < self.config.min_chars:
                self.skipped["empty chunks"] += 1
                continue
            text = self._text(title, piece)
            payload = self._payload(
                text, wikidata_id=qid, title=title, chunk_index=chunk, image_url=image_url, url=entity.url,
                source="infoseek",
            )
            out.append(Passage(id=f"{pid_base}#{chunk}", text=text, title=title, image=image, payload=payload))
        if not out:
            self.skipped["entities without content"] += 1
        return out


# ---------------------------------------------------------------------------------------
# ReT-M2KR passages and generic jsonl
# ---------------------------------------------------------------------------------------


class _JsonlReader(KBReader):
    """A KB with one record per jsonl line (record key = line number)."""

    def _records(self, start: int, errors: MalformedRows) -> Iterator[tuple[int, int | None, Any]]:
        for line, row in iter_jsonl(self.path, errors, start_line=start):
            yield line, line, row

    def _image_passage(self, pid: str, text: str, image_rel: str | None, line: int | None,
                       payload: dict[str, Any]) -> Passage:
        """The passage, its image resolved; a passage with no text must have its image file."""
        image = self._image_file(image_rel)
        if not text.strip() and image and not os.path.isfile(image):
            raise RowError(self.path, line, f"passage {pid}: no text and its image is missing: {image}")
        return Passage(id=pid, text=text, title=str(payload.get("title") or ""), image=image, payload=payload)


class M2KRReader(_JsonlReader):
    """M2KR passages, parsed by :func:`eval.m2kr.parse_m2kr_passage` (``passage_id``,
    ``passage_text`` or ``passage_content``, optional ``passage_image_path`` relative to
    ``image_root``, else to the KB file; other scalar fields go into the payload).
    jsonl (ReT-M2KR) or parquet (the M2KR dataset's ``<Task>_passages`` files; record
    key = row number)."""

    format = "m2kr"
    key_field = None

    def _records(self, start: int, errors: MalformedRows) -> Iterator[tuple[int, int | None, Any]]:
        from eval.m2kr import iter_m2kr_rows

        for line, row in iter_m2kr_rows(self.path, errors, start_line=start):
            yield line, line, row

    def count_records(self) -> int | None:
        from eval.m2kr import count_m2kr_rows

        rows = count_m2kr_rows(self.path)
        return rows if rows is not None else _count_lines(self.path)

    def _passages(self, row: dict[str, Any], line: int | None) -> list[Passage]:
        from eval.m2kr import parse_m2kr_passage

        m = parse_m2kr_passage(row, self.path, line or 0)
        text = self._bounded(m.text, line, f"passage {m.passage_id}")
        if len(text.strip()) < self.config.min_chars and not m.image_path:
            self.skipped["empty passages"] += 1
            return []
        payload = self._payload(text, image_path=m.image_path, source="m2kr", **m.extra)
        return [self._image_passage(m.passage_id, text, m.image_path, line, payload)]


class MBEIRReader(_JsonlReader):
    """An M-BEIR candidate pool (``cand_pool/{local,global}/mbeir_*_cand_pool.jsonl``), parsed by
    :func:`eval.mbeir.parse_mbeir_candidate`: one passage per candidate, id = its ``did``, text
    = UniIR's ``format_string(txt)``, encoded with its image (``img_path``, relative to the
    M-BEIR root: ``image_root``, else the root the pool file sits in). Payload: ``did``,
    ``modality``, ``dataset_id``, ``image_path``, ``text``."""

    format = "mbeir"
    key_field = None

    def _passages(self, row: dict[str, Any], line: int | None) -> list[Passage]:
        from eval.mbeir import format_string, parse_mbeir_candidate

        c = parse_mbeir_candidate(row, self.path, line or 0)
        text = self._bounded(format_string(c.text), line, f"candidate {c.did}")
        payload = self._payload(text, did=c.did, modality=c.modality, dataset_id=c.dataset_id,
                                image_path=c.image_path, source="mbeir")
        return [self._image_passage(c.did, text, c.image_path, line, payload)]

    def _image_file(self, relative: str | None) -> str | None:
        if not relative or self.config.image_root or Path(relative).is_absolute():
            return super()._image_file(relative)
        parent = self.path.parent  # <root>/cand_pool/{local,global}/<pool>.jsonl
        root = parent.parent.parent if parent.parent.name == "cand_pool" else parent
        return str(root / relative)


_RESERVED = {"passage_id", "text", "image_path", "source"}


class JsonlReader(_JsonlReader):
    """Generic jsonl: ``id`` (str or int), ``text``, optional ``image`` (path), optional
    ``metadata`` (object; its fields go into the payload, e.g. for filters)."""

    format = "jsonl"
    key_field = None

    def _passages(self, row: dict[str, Any], line: int | None) -> list[Passage]:
        pid = row.get("id")
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        if not isinstance(pid, str) or not pid:
            raise RowError(self.path, line, f"missing or empty 'id' (got {pid!r})")
        text = row.get("text")
        image_rel = row.get("image") or None
        if text is not None and not isinstance(text, str):
            raise RowError(self.path, line, f"passage {pid}: 'text' must be a string")
        if image_rel is not None and not isinstance(image_rel, str):
            raise RowError(self.path, line, f"passage {pid}: 'image' must be a path string")
        if not (text or "").strip() and not image_rel:
            raise RowError(self.path, line, f"passage {pid}: has neither 'text' nor 'image'")
        text = self._bounded(text or "", line, f"passage {pid}")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise RowError(self.path, line, f"passage {pid}: 'metadata' must be an object")
        clash = sorted(_RESERVED & set(metadata))
        if clash:
            raise RowError(self.path, line, f"passage {pid}: metadata may not use reserved field(s) {clash}")
        payload = self._payload(text or "", image_path=image_rel, source="jsonl", **metadata)
        return [self._image_passage(pid, text or "", image_rel, line, payload)]


READERS: dict[str, type[KBReader]] = {
    "evqa": EVQAReader,
    "infoseek": InfoSeekReader,
    "m2kr": M2KRReader,
    "mbeir": MBEIRReader,
    "jsonl": JsonlReader,
}


def make_reader(fmt: str, path: str | Path, config: IngestConfig, errors: MalformedRows | None = None) -> KBReader:
    """The reader for ``fmt`` (one of :data:`READERS`) over ``path``."""
    try:
        cls = READERS[fmt]
    except KeyError:
        raise ConfigError(f"unknown KB format {fmt!r} (known: {', '.join(READERS)})", "--format") from None
    return cls(path, config, errors)


# ---------------------------------------------------------------------------------------
# Fast counting for the progress bar
# ---------------------------------------------------------------------------------------


def _open_binary(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX/")]
        return archive.open(members[0]) if len(members) == 1 else None
    return open(path, "rb")


def _count_pattern(path: Path, pattern: bytes, chunk: int = 1 << 24) -> int | None:
    fh = _open_binary(path)
    if fh is None:
        return None
    count, tail = 0, b""
    with fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            data = tail + block
            count += data.count(pattern)
            # Keep the last len(pattern)-1 bytes (too short to hold a match themselves), so a
            # match straddling two blocks is found once in the next round.
            keep = len(pattern) - 1
            tail = data[-keep:] if keep else b""
    return count


def _count_lines(path: Path) -> int | None:
    """Number of lines (the last one may lack a newline), read as raw bytes."""
    fh = _open_binary(path)
    if fh is None:
        return None
    lines, last = 0, b"\n"
    with fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")

