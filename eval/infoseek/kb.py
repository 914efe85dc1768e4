"""Streaming InfoSeek's Wikipedia knowledge bases: Wiki6M (jsonl) and the 100K variants.

* ``Wiki6M_ver_1_0.jsonl.gz`` (and ``_title_only.jsonl``): one record per line,
  ``{"wikidata_id", "wikipedia_title", "wikipedia_content", "wikipedia_image_url",
  "wikipedia_summary"}``; the image URL and summary may be missing or null.
* ``Wiki100k_ver_1_0-all.json`` (Wiki-LLaVA / ReflectiVA): one JSON object
  ``{key: {"wikipedia_content", ...}}``; streamed with :mod:`eval.jsonstream`. A top-level
  array of records is accepted too.
* EchoSight's ``infoseek_100k_wiki`` uses the E-VQA KB format: read it with
  :func:`eval.evqa.iter_kb`.

:func:`iter_wiki_kb` yields ``(key, WikiEntity)``: the key is the ``wikidata_id`` for
jsonl records and the object key for the dict form (whatever the file is keyed by).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from ret2vqa.errors import InputError
from ret2vqa.io import MalformedRows, iter_jsonl

from ..jsonstream import iter_json_items

_QID = re.compile(r"^Q\d+$")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
_JSON_SUFFIXES = (".json", ".json.gz", ".zip")


@dataclass(frozen=True)
class WikiEntity:
    """One Wikipedia article of an InfoSeek KB."""

    wikidata_id: str | None
    wikipedia_title: str
    wikipedia_content: str
    wikipedia_image_url: str | None = None
    wikipedia_summary: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_wiki_entity(record: Any, key: str | None = None, require_content: bool = True) -> WikiEntity:
    """Validate one KB record (``key``: the dict key in the json-object form); ValueError names the field."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    wikidata_id = record.get("wikidata_id")
    if wikidata_id is None and key is not None and _QID.match(key):
        wikidata_id = key
    if key is None and (not isinstance(wikidata_id, str) or not wikidata_id):
        raise ValueError(f"field 'wikidata_id' must be a non-empty string, got {wikidata_id!r}")
    if wikidata_id is not None and not isinstance(wikidata_id, str):
        raise ValueError(f"field 'wikidata_id' must be a string, got {wikidata_id!r}")
    title = record.get("wikipedia_title", record.get("title"))
    if not isinstance(title, str):
        raise ValueError(f"field 'wikipedia_title' must be a string, got {title!r}"[:200])
    content = record.get("wikipedia_content")
    if content is None and not require_content:
        content = ""
    if not isinstance(content, str):
        raise ValueError(f"field 'wikipedia_content' must be a string, got {content!r}"[:200])
    optional = {}
    for name in ("wikipedia_image_url", "wikipedia_summary"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"field '{name}' must be a string or null, got {value!r}"[:200])
        optional[name] = value
    url = record.get("url", record.get("wikipedia_url"))
    return WikiEntity(
        wikidata_id=wikidata_id,
        wikipedia_title=title,
        wikipedia_content=content,
        url=url if isinstance(url, str) else None,
        **optional,
    )


def kb_file_format(path: str | Path) -> str:
    """``"jsonl"`` or ``"json"`` from the file name; ValueError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(_JSON_SUFFIXES):
        return "json"
    raise InputError(
        f"{path}: unknown KB file type; expected .jsonl / .jsonl.gz (one record per line) or .json / .json.gz / .zip"
    )


def iter_wiki_kb(
    path: str | Path, errors: MalformedRows | None = None, require_content: bool = True
) -> Iterator[tuple[str, WikiEntity]]:
    """Yield ``(key, WikiEntity)`` from a Wiki6M-style jsonl(.gz) or a json-object (Wiki100K) file.

    ``require_content=False`` accepts records without ``wikipedia_content`` (the
    ``_title_only`` file), which then have ``""``. Malformed records go to ``errors``
    (strict when ``None``) with ``file:line``.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    if kb_file_format(path) == "jsonl":
        for line, record in iter_jsonl(path, errors):
            try:
                entity = parse_wiki_entity(record, None, require_content)
            except ValueError as exc:
                errors.report(path, line, str(exc))
                continue
            yield entity.wikidata_id, entity  # type: ignore[misc]
        return
    for item in iter_json_items(path, errors):
        key = item.key if isinstance(item.key, str) else None
        try:
            entity = parse_wiki_entity(item.value, key, require_content)
        except ValueError as exc:
            errors.report(path, item.line, f"KB entry {item.key!r}: {exc}")
            continue
        yield (key if key is not None else entity.wikidata_id or str(item.key)), entity


def _kb_rows(path: str, require_content: bool, errors: MalformedRows) -> Iterator[dict[str, Any]]:
    for key, entity in iter_wiki_kb(path, errors, require_content):
        yield {"key": key, **entity.to_dict()}


def wiki_kb_features():
    from datasets import Features, Value

    string = Value("string")
    return Features(
        {
            "key": string,
            "wikidata_id": string,
            "wikipedia_title": string,
            "wikipedia_content": string,
            "wikipedia_image_url": string,
            "wikipedia_summary": string,
            "url": string,
        }
    )


def wiki_kb_dataset(
    path: str | Path,
    errors: MalformedRows | None = None,
    require_content: bool = True,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
):
    """The KB as a ``datasets.Dataset`` (one row per article; built by streaming, cached on disk)."""
    from ..hf_datasets import dataset_from_rows

    return dataset_from_rows(
        _kb_rows,
        source=path,
        row_kwargs={"path": str(path), "require_content": require_content},
        features=wiki_kb_features(),
        errors=errors,
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
    )
