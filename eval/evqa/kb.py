"""Streaming the E-VQA knowledge base ``encyclopedic_kb_wiki.json`` (~2M articles, ~14 GB).

The file is one JSON object ``{wikipedia_url: entry}``; each entry has ``title``,
``section_titles``, ``section_texts`` (parallel lists), ``image_urls``,
``image_reference_descriptions`` (captions, parallel to ``image_urls``),
``image_section_indices`` and ``url`` (= the key). :func:`iter_kb` streams it with
:func:`eval.jsonstream.iter_json_items` (the ``.zip`` as downloaded works too), so
ingestion never holds more than one article in memory. EchoSight's InfoSeek 100K KB
uses the same format.

Keys are opaque strings: match them exactly (they are percent-encoded; see
``urllib.parse.quote(url, safe=":/")`` for raw Lens URLs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ret2vqa.io import MalformedRows

from ..jsonstream import iter_json_items

logger = logging.getLogger(__name__)

_STR_LISTS = ("section_titles", "section_texts", "image_urls", "image_reference_descriptions")


@dataclass(frozen=True)
class KBEntry:
    """One KB article. ``url`` is the key it is stored under."""

    url: str
    title: str
    section_titles: list[str]
    section_texts: list[str]
    image_urls: list[str] = field(default_factory=list)
    image_reference_descriptions: list[str] = field(default_factory=list)
    image_section_indices: list[int] = field(default_factory=list)

    def sections(self) -> Iterator[tuple[int, str, str]]:
        """``(section_index, section_title, section_text)``; ``evidence_section_id`` indexes these."""
        yield from zip(range(len(self.section_texts)), self.section_titles, self.section_texts)

    def images(self) -> Iterator[tuple[str, str, int | None]]:
        """``(image_url, caption, section_index)``; stops at the shortest list if they disagree."""
        for i, url in enumerate(self.image_urls):
            if i >= len(self.image_reference_descriptions):
                return
            section = self.image_section_indices[i] if i < len(self.image_section_indices) else None
            yield url, self.image_reference_descriptions[i], section

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "title": self.title,
            "section_titles": self.section_titles,
            "section_texts": self.section_texts,
            "image_urls": self.image_urls,
            "image_reference_descriptions": self.image_reference_descriptions,
            "image_section_indices": self.image_section_indices,
        }


def parse_kb_entry(key: str, value: Any) -> tuple[KBEntry, bool]:
    """Validate one KB member; returns the entry and whether its image lists disagree in length.

    Raises ValueError naming the offending field.
    """
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    title = value.get("title")
    if not isinstance(title, str):
        raise ValueError(f"field 'title' must be a string, got {title!r}"[:200])
    lists: dict[str, list] = {}
    for name in _STR_LISTS:
        items = value.get(name, [] if name.startswith("image_") else None)
        if items is None and name.startswith("image_"):
            items = []
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError(f"field '{name}' must be a list of strings")
        lists[name] = items
    indices = value.get("image_section_indices") or []
    if not isinstance(indices, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in indices):
        raise ValueError("field 'image_section_indices' must be a list of integers")
    if len(lists["section_titles"]) != len(lists["section_texts"]):
        raise ValueError(
            f"'section_titles' has {len(lists['section_titles'])} items but 'section_texts' has {len(lists['section_texts'])}"
        )
    ragged = not (len(lists["image_urls"]) == len(lists["image_reference_descriptions"]) == len(indices))
    entry = KBEntry(url=key, title=title, image_section_indices=indices, **lists)
    return entry, ragged


def iter_kb(path: str | Path, errors: MalformedRows | None = None) -> Iterator[tuple[str, KBEntry]]:
    """Yield ``(url, KBEntry)`` for each article of an E-VQA-format KB json (``.json``, ``.json.gz``, ``.zip``).

    Entries that are not valid articles go to ``errors`` (strict when ``None``) with the
    file, line and URL. Articles whose three image lists differ in length are kept (their
    text is fine; :meth:`KBEntry.images` stops at the shortest list) and counted in one
    warning at the end.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    ragged = 0
    for item in iter_json_items(path, errors):
        try:
            entry, uneven = parse_kb_entry(str(item.key), item.value)
        except ValueError as exc:
            errors.report(path, item.line, f"KB entry {item.key!r}: {exc}")
            continue
        ragged += uneven
        yield entry.url, entry
    if ragged:
        logger.warning(
            "%s: %d article(s) have image_urls / image_reference_descriptions / image_section_indices "
            "of different lengths; their images are paired up to the shortest list",
            path,
            ragged,
        )


def _kb_rows(path: str, errors: MalformedRows) -> Iterator[dict[str, Any]]:
    for _, entry in iter_kb(path, errors):
        yield entry.to_dict()


def kb_features():
    from datasets import Features, Value

    from ..hf_datasets import list_of

    string = Value("string")
    return Features(
        {
            "url": string,
            "title": string,
            "section_titles": list_of(string),
            "section_texts": list_of(string),
            "image_urls": list_of(string),
            "image_reference_descriptions": list_of(string),
            "image_section_indices": list_of(Value("int64")),
        }
    )


def kb_dataset(
    path: str | Path,
    errors: MalformedRows | None = None,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
):
    """The KB as a ``datasets.Dataset`` (one row per article, built by streaming; cached on disk)."""
    from ..hf_datasets import dataset_from_rows

    return dataset_from_rows(
        _kb_rows,
        source=path,
        row_kwargs={"path": str(path)},
        features=kb_features(),
        errors=errors,
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
    )
