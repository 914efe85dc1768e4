"""Reading the official E-VQA question CSVs (``train.csv``, ``val.csv``, ``test.csv``).

Columns, in the released order (:data:`EVQA_COLUMNS`)::

    wikipedia_title, wikipedia_url, question_original, question, question_type, answer,
    evidence, evidence_section_id, evidence_section_title, dataset_name, dataset_category_id,
    wikipedia_url_used_in_train, encyclopedic_vqa_split, dataset_image_ids

Every record keeps its raw cells (so nothing is lost or re-encoded) and gets parsed
views: ``answers`` (``|``-separated annotator answers), ``wikipedia_urls`` (two for
``2_hop``), ``image_ids`` (``|``-separated), ``evidence_section_ids`` (ints).

A question's id is its **0-based record index** in the file, the index a
``pandas.read_csv`` of the same file gives it: blank lines do not count, records with
quoted multi-line cells count once, and a malformed record keeps its index (so the
ids of the rows after it do not shift). Malformed records are reported with
``file:line`` through :class:`ret2vqa.io.MalformedRows`, never silently dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ret2vqa.io import MalformedRows, RowError, iter_csv

from .metric import QUESTION_TYPES, reference_problem, split_references

EVQA_COLUMNS: tuple[str, ...] = (
    "wikipedia_title",
    "wikipedia_url",
    "question_original",
    "question",
    "question_type",
    "answer",
    "evidence",
    "evidence_section_id",
    "evidence_section_title",
    "dataset_name",
    "dataset_category_id",
    "wikipedia_url_used_in_train",
    "encyclopedic_vqa_split",
    "dataset_image_ids",
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class EVQAQuestion:
    """One E-VQA CSV record: the raw official cells plus parsed views."""

    question_id: int
    line: int
    wikipedia_title: str
    wikipedia_url: str
    question_original: str
    question: str
    question_type: str
    answer: str
    evidence: str
    evidence_section_id: str
    evidence_section_title: str
    dataset_name: str
    dataset_category_id: int | None
    wikipedia_url_used_in_train: bool | None
    encyclopedic_vqa_split: str
    dataset_image_ids: str

    @property
    def answers(self) -> list[str]:
        """Annotator answers (``|``-separated); for ``multi_answer`` each is an ``&&`` list."""
        return split_references(self.answer)

    @property
    def wikipedia_urls(self) -> list[str]:
        """KB keys: two for ``2_hop`` (the pictured entity first), one otherwise."""
        return self.wikipedia_url.split("|") if self.question_type == "2_hop" else [self.wikipedia_url]

    @property
    def entity_url(self) -> str:
        """The article of the pictured entity: the ground truth of article-level retrieval."""
        return self.wikipedia_urls[0]

    @property
    def image_ids(self) -> list[str]:
        """Up to 5 image ids; ``image_ids[0]`` is the conventional query image."""
        return self.dataset_image_ids.split("|")

    @property
    def evidence_section_ids(self) -> list[int]:
        return _parse_section_ids(self.evidence_section_id)

    @property
    def is_single_hop(self) -> bool:
        return self.question_type != "2_hop"

    def to_dict(self) -> dict[str, Any]:
        """Raw fields plus the parsed views (the ``datasets`` schema of :func:`questions_dataset`)."""
        row = dataclasses.asdict(self)
        row.update(
            answers=self.answers,
            wikipedia_urls=self.wikipedia_urls,
            image_ids=self.image_ids,
            evidence_section_ids=self.evidence_section_ids,
        )
        return row


def _parse_int(text: str) -> int:
    """``"12"`` or a pandas-style ``"12.0"``; anything else raises ValueError."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def _parse_section_ids(text: str) -> list[int]:
    text = text.strip()
    return [_parse_int(part) for part in text.split("|")] if text else []


def _parse_row(
    row: dict[str, str],
    question_id: int,
    line: int,
    question_types: tuple[str, ...] | None,
    check_references: bool = True,
) -> EVQAQuestion:
    """Validate one CSV record; raises ValueError with a message naming the field."""
    qtype = row["question_type"].strip()
    if question_types is not None and qtype not in question_types:
        raise ValueError(f"question_type {qtype!r} is not one of {', '.join(question_types)}")
    if not row["question"].strip():
        raise ValueError("empty question")
    if not row["answer"]:
        raise ValueError("empty answer")
    if check_references and qtype in QUESTION_TYPES:
        problem = reference_problem(row["answer"], qtype)
        if problem:
            raise ValueError(
                f"answer: {problem} (the official evaluator would raise on it; "
                "check_references=False loads such rows for uses other than scoring)"
            )
    elif any(not ref for ref in split_references(row["answer"])):
        raise ValueError(f"answer {row['answer']!r} has an empty '|'-separated part")
    url = row["wikipedia_url"].strip()
    if not url:
        raise ValueError("empty wikipedia_url")
    if qtype == "2_hop":
        urls = url.split("|")
        if len(urls) != 2 or not all(urls):
            raise ValueError(f"2_hop wikipedia_url must be two '|'-joined URLs, got {url!r}")
    image_ids = row["dataset_image_ids"].strip()
    if not image_ids or not all(part.strip() for part in image_ids.split("|")):
        raise ValueError(f"dataset_image_ids {row['dataset_image_ids']!r} must be non-empty '|'-separated ids")
    if not row["dataset_name"].strip():
        raise ValueError("empty dataset_name")
    try:
        _parse_section_ids(row["evidence_section_id"])
    except ValueError:
        raise ValueError(f"evidence_section_id {row['evidence_section_id']!r} is not '|'-separated integers") from None
    category = row["dataset_category_id"].strip()
    try:
        category_id = _parse_int(category) if category else None
    except ValueError:
        raise ValueError(f"dataset_category_id {category!r} is not an integer") from None
    used = row["wikipedia_url_used_in_train"].strip().lower()
    if used and used not in _TRUE | _FALSE:
        raise ValueError(f"wikipedia_url_used_in_train {row['wikipedia_url_used_in_train']!r} is not True/False")
    return EVQAQuestion(
        question_id=question_id,
        line=line,
        wikipedia_title=row["wikipedia_title"],
        wikipedia_url=url,
        question_original=row["question_original"],
        question=row["question"],
        question_type=qtype,
        answer=row["answer"],
        evidence=row["evidence"],
        evidence_section_id=row["evidence_section_id"].strip(),
        evidence_section_title=row["evidence_section_title"],
        dataset_name=row["dataset_name"].strip(),
        dataset_category_id=category_id,
        wikipedia_url_used_in_train=(used in _TRUE) if used else None,
        encyclopedic_vqa_split=row["encyclopedic_vqa_split"].strip(),
        dataset_image_ids=image_ids,
    )


def _check_header(path: str | Path) -> None:
    import csv

    from ret2vqa.io import open_text

    with open_text(path) as fh:
        header = next(csv.reader(fh), None)
    if header is None:
        raise RowError(path, 1, "empty CSV file: no header row")
    missing = [c for c in EVQA_COLUMNS if c not in header]
    if missing:
        raise RowError(path, 1, f"not an E-VQA question CSV: missing column(s) {', '.join(missing)}")


def iter_records(
    path: str | Path,
    errors: MalformedRows | None = None,
    question_types: Iterable[str] | None = QUESTION_TYPES,
    check_references: bool = True,
) -> Iterator[tuple[int, EVQAQuestion | None]]:
    """Yield ``(question_id, question)`` for every record; ``question`` is ``None`` for a malformed one.

    The malformed record has already been reported to ``errors`` (strict when ``None``:
    the first one raises :class:`RowError`). ``question_types=None`` accepts any type
    (e.g. EchoSight's InfoSeek-as-E-VQA files with type ``infoseek``); such rows load
    but cannot be scored. ``check_references`` (default) rejects answers the official
    metric cannot score (empty after normalisation, e.g. ``"A"``); turn it off to load
    every row of a training file.
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    types = tuple(question_types) if question_types is not None else None
    _check_header(path)
    base = errors.count
    own_reports = 0
    received = 0

    def csv_skipped() -> int:  # records iter_csv rejected (wrong number of fields) so far
        return errors.count - base - own_reports

    emitted = 0
    for line, row in iter_csv(path, errors):
        index = received + csv_skipped()
        while emitted < index:  # placeholders keep ids aligned across records iter_csv rejected
            yield emitted, None
            emitted += 1
        received += 1
        try:
            item: EVQAQuestion | None = _parse_row(row, index, line, types, check_references)
        except ValueError as exc:
            own_reports += 1
            errors.report(path, line, str(exc))
            item = None
        yield index, item
        emitted = index + 1
    while emitted < received + csv_skipped():
        yield emitted, None
        emitted += 1


def iter_questions(
    path: str | Path,
    errors: MalformedRows | None = None,
    question_types: Iterable[str] | None = QUESTION_TYPES,
    check_references: bool = True,
) -> Iterator[EVQAQuestion]:
    """Yield the valid :class:`EVQAQuestion` records of an E-VQA CSV (malformed ones go to ``errors``)."""
    for _, item in iter_records(path, errors, question_types, check_references):
        if item is not None:
            yield item


def load_questions(
    path: str | Path,
    errors: MalformedRows | None = None,
    question_types: Iterable[str] | None = QUESTION_TYPES,
    check_references: bool = True,
) -> list[EVQAQuestion | None]:
    """All records as a list indexed by ``question_id``; malformed records are ``None`` placeholders."""
    return [item for _, item in iter_records(path, errors, question_types, check_references)]


def _question_rows(
    path: str, question_types: list[str] | None, check_references: bool, errors: MalformedRows
) -> Iterator[dict[str, Any]]:
    for item in iter_questions(path, errors, question_types, check_references):
        yield item.to_dict()


def question_features():
    """The ``datasets.Features`` of :func:`questions_dataset`."""
    from datasets import Features, Value

    from ..hf_datasets import list_of

    string = Value("string")
    return Features(
        {
            "question_id": Value("int64"),
            "line": Value("int64"),
            **{c: string for c in EVQA_COLUMNS},
            "dataset_category_id": Value("int64"),
            "wikipedia_url_used_in_train": Value("bool"),
            "answers": list_of(string),
            "wikipedia_urls": list_of(string),
            "image_ids": list_of(string),
            "evidence_section_ids": list_of(Value("int64")),
        }
    )


def questions_dataset(
    path: str | Path,
    errors: MalformedRows | None = None,
    question_types: Iterable[str] | None = QUESTION_TYPES,
    check_references: bool = True,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
):
    """The valid records of an E-VQA CSV as a ``datasets.Dataset`` (raw columns + parsed lists)."""
    from ..hf_datasets import dataset_from_rows

    return dataset_from_rows(
        _question_rows,
        source=path,
        row_kwargs={
            "path": str(path),
            "question_types": list(question_types) if question_types is not None else None,
            "check_references": check_references,
        },
        features=question_features(),
        errors=errors,
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
    )
