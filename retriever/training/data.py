"""Training pairs: readers for our jsonl layout and ReT-M2KR, a dataset and a collator.

Every row is validated when read; a malformed row (missing fields, a side with
neither text nor image, an image file that does not exist) is reported with
``file:line`` through :class:`ret2vqa.io.MalformedRows` (fatal with ``strict``), so
a training run never silently trains on less data than the user thinks.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import Dataset

from ret2vqa.errors import InputError
from ret2vqa.io import MalformedRows, iter_jsonl

from ..processing_ret2 import ReT2Processor, load_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPair:
    """A query and one positive document. ``entity`` groups items that count as positives of each other."""

    query_text: str | None
    query_image: str | None
    doc_text: str | None
    doc_image: str | None
    entity: str


@dataclass(frozen=True)
class _Side:
    text: str | None
    image: str | None


def entity_key(value: str) -> int:
    """A stable 63-bit integer for an entity id (labels must be tensors to gather across processes)."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def _resolve_image(value: Any, root: Path, path: Path, line: int, field: str, errors: MalformedRows,
                   check: bool) -> str | None | bool:
    """Image path resolved against ``root``; ``False`` when the row must be skipped."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        errors.report(path, line, f"field '{field}' must be a path string, got {type(value).__name__}")
        return False
    resolved = Path(value) if Path(value).is_absolute() else root / value
    if check and not resolved.is_file():
        errors.report(path, line, f"field '{field}': image file not found: {resolved}")
        return False
    return str(resolved)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas-written files
        return None
    text = str(value).strip()
    return text or None


def query_text(instruction: str | None, question: str | None) -> str | None:
    """``"{instruction} {question}"`` as ReT-M2KR builds it (instruction alone if no question)."""
    parts = [p for p in (_text(instruction), _text(question)) if p]
    return " ".join(parts) or None


def read_pairs(path: str | Path, image_root: str | Path | None = None, errors: MalformedRows | None = None,
               check_images: bool = True, default_instruction: str | None = None) -> Iterator[TrainingPair]:
    """Rows ``{"query", "query_image", "passage", "passage_image", "entity_id", "instruction"?}``."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    errors = errors if errors is not None else MalformedRows()
    for line, row in iter_jsonl(path, errors):
        q_img = _resolve_image(row.get("query_image"), root, path, line, "query_image", errors, check_images)
        d_img = _resolve_image(row.get("passage_image"), root, path, line, "passage_image", errors, check_images)
        if q_img is False or d_img is False:
            continue
        instruction = row.get("instruction", default_instruction)
        q_text = query_text(instruction, row.get("query"))
        if _text(row.get("query")) is None and q_img is None:
            errors.report(path, line, "the query has neither 'query' text nor 'query_image'")
            continue
        d_text = _text(row.get("passage"))
        if d_text is None and d_img is None:
            errors.report(path, line, "the positive has neither 'passage' text nor 'passage_image'")
            continue
        entity = row.get("entity_id")
        entity = str(entity) if entity not in (None, "") else f"{d_text}\x00{d_img}"
        yield TrainingPair(q_text, q_img, d_text, d_img, entity)


def read_m2kr_passages(path: str | Path, image_root: Path, errors: MalformedRows, check_images: bool
                       ) -> dict[str, _Side]:
    """``passage_id → (text, image)`` from an M2KR passages jsonl (read by :mod:`eval.m2kr`)."""
    from eval.m2kr import iter_m2kr_passages

    path = Path(path)
    passages: dict[str, _Side] = {}
    for p in iter_m2kr_passages(path, errors):
        image = _resolve_image(p.image_path, image_root, path, p.line, "passage_image_path", errors, check_images)
        if image is False:
            image = None  # a passage whose image is missing is still usable as text
        text = _text(p.text)
        if text is None and image is None:
            errors.report(path, p.line, f"passage {p.passage_id} has neither passage_text nor an image")
            continue
        passages[p.passage_id] = _Side(text, image)
    return passages


def read_m2kr(queries_path: str | Path, passages_path: str | Path, image_root: str | Path | None = None,
              errors: MalformedRows | None = None, check_images: bool = True) -> Iterator[TrainingPair]:
    """M2KR layout (:mod:`eval.m2kr`): queries with positive ``passage_id`` (one or a list) + a passages file."""
    from eval.m2kr import iter_m2kr_queries

    queries_path = Path(queries_path)
    root = Path(image_root) if image_root else queries_path.parent
    errors = errors if errors is not None else MalformedRows()
    passages = read_m2kr_passages(passages_path, root, errors, check_images)
    for q in iter_m2kr_queries(queries_path, errors):
        found = [p for p in q.positives if p in passages]
        if not found:
            errors.report(queries_path, q.line, f"positive passage(s) {q.positives[:3]} not in {passages_path}")
            continue
        image = _resolve_image(q.image_path, root, queries_path, q.line, "image_path", errors, check_images)
        if image is False:
            continue
        doc = passages[found[0]]
        yield TrainingPair(q.text, image, doc.text, doc.image, found[0])


class PairDataset(Dataset):
    """In-memory list of :class:`TrainingPair` (paths only; images load in the collator)."""

    def __init__(self, pairs: list[TrainingPair]):
        if not pairs:
            raise InputError("no usable training pairs (see the malformed-row report above)")
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> TrainingPair:
        return self.pairs[index]


class PairCollator:
    """Loads images and builds one model batch: the B queries followed by their B documents.

    One forward pass over both halves (instead of two) keeps distributed data parallel
    simple and pads once; the trainer splits the embeddings back into queries/documents.
    """

    def __init__(self, processor: ReT2Processor):
        self.processor = processor

    def __call__(self, pairs: list[TrainingPair]) -> dict[str, Any]:
        texts = [p.query_text for p in pairs] + [p.doc_text for p in pairs]
        paths = [p.query_image for p in pairs] + [p.doc_image for p in pairs]
        images = [load_image(path, i) if path else None for i, path in enumerate(paths)]
        labels = torch.tensor([entity_key(p.entity) for p in pairs], dtype=torch.long)
        return {"inputs": dict(self.processor(texts, images)), "labels": labels}


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch, reproducible from (seed, epoch) so a resumed run sees the same data."""
    order = list(range(num_items))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order
