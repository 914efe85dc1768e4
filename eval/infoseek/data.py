"""Reading the official InfoSeek annotation files.

* ``infoseek_{train,val,test}.jsonl``: ``data_id, image_id, question, answer, answer_eval,
  data_split``. ``answer_eval`` is a list of accepted strings for String/Time questions
  and ``[{"wikidata": v, "range": [lo, hi]}]`` for Numerical ones (raw form).
* ``*_withkb.jsonl``: ``data_id, entity_id`` (Wikidata QID), ``entity_text``.
* ``*_qtype.jsonl``: ``data_id, question_type`` (``String`` / ``Numerical`` / ``Time``).

Every reader validates its rows and reports malformed ones with ``file:line``
through :class:`ret2vqa.io.MalformedRows` (strict, i.e. raising, when ``errors`` is
``None``). The public test file has no answers: answers are required unless a row's
``data_split`` starts with ``test`` (``require_answers`` overrides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ret2vqa.errors import MissingFileError
from ret2vqa.io import MalformedRows, RowError, iter_jsonl

QUESTION_TYPES: tuple[str, ...] = ("String", "Numerical", "Time")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _numeric_range(answer_eval: Any) -> list[float] | None:
    """``[lo, hi]`` of a raw Numerical ``answer_eval`` (list of dicts, or a dict), else ``None``."""
    item = (
        answer_eval[0]
        if isinstance(answer_eval, list) and answer_eval and isinstance(answer_eval[0], dict)
        else answer_eval
    )
    if not isinstance(item, dict):
        return None
    rng = item.get("range")
    if not isinstance(rng, list) or len(rng) < 2 or not all(_is_number(v) for v in rng[:2]):
        raise ValueError(f"numerical answer_eval needs 'range': [low, high] numbers, got {item!r}"[:200])
    return [float(rng[0]), float(rng[1])]


def check_answer_eval(answer_eval: Any) -> None:
    """Raise ValueError unless ``answer_eval`` is a non-empty list of strings or a raw numerical form."""
    if isinstance(answer_eval, dict):
        _numeric_range(answer_eval)
        return
    if not isinstance(answer_eval, list) or not answer_eval:
        raise ValueError(f"'answer_eval' must be a non-empty list, got {answer_eval!r}"[:200])
    if isinstance(answer_eval[0], dict):
        _numeric_range(answer_eval)
        return
    if not all(isinstance(a, str) for a in answer_eval):
        raise ValueError(
            f"'answer_eval' must be a list of strings (or the numerical range form), got {answer_eval!r}"[:200]
        )


def evaluator_answer_eval(answer_eval: Any, question_type: str) -> list[str]:
    """``answer_eval`` as the official evaluator uses it (its ``prepare_qid2example`` step).

    Numerical: ``[str(lo), str(hi)]`` from ``answer_eval[0]["range"]`` (or
    ``answer_eval["range"]``). As an extension, an already converted ``[lo, hi]`` list
    (the evaluator's internal form) is accepted as is. Raises ValueError on anything the
    official script would crash on.
    """
    if question_type.lower() == "numerical":
        if isinstance(answer_eval, dict) or (
            isinstance(answer_eval, list) and answer_eval and isinstance(answer_eval[0], dict)
        ):
            _numeric_range(answer_eval)  # validates the raw form
            item = answer_eval[0] if isinstance(answer_eval, list) else answer_eval
            values = [str(a) for a in item["range"]][:2]
        elif isinstance(answer_eval, list):
            values = [str(a) for a in answer_eval][:2]  # already the evaluator's [lo, hi] form
        else:
            raise ValueError(
                f"numerical answer_eval must be [{{'wikidata', 'range'}}] or [low, high], got {answer_eval!r}"[:200]
            )
        try:
            if len([float(v) for v in values]) != 2:
                raise ValueError
        except ValueError:
            raise ValueError(f"numerical answer_eval range {values!r} is not two numbers") from None
        return values
    check_answer_eval(answer_eval)
    if isinstance(answer_eval, dict) or isinstance(answer_eval[0], dict):
        raise ValueError(f"a {question_type} question cannot have a numerical answer_eval: {answer_eval!r}"[:200])
    return list(answer_eval)


@dataclass(frozen=True)
class InfoSeekQuestion:
    """One row of ``infoseek_{split}.jsonl`` (raw ``answer_eval`` kept as in the file)."""

    data_id: str
    image_id: str
    question: str
    answer: list[str] | None
    answer_eval: Any
    data_split: str
    line: int
    question_type: str | None = None  # present in the evaluator's internal form, or joined from a qtype file
    entity_id: str | None = None  # joined from a *_withkb.jsonl file
    entity_text: str | None = None

    @property
    def answer_range(self) -> list[float] | None:
        """``[lo, hi]`` for a raw Numerical ``answer_eval``, else ``None``."""
        return _numeric_range(self.answer_eval) if self.answer_eval is not None else None

    @property
    def answer_wikidata(self) -> float | None:
        item = self.answer_eval[0] if isinstance(self.answer_eval, list) and self.answer_eval else self.answer_eval
        value = item.get("wikidata") if isinstance(item, dict) else None
        return float(value) if _is_number(value) else None

    def to_dict(self) -> dict[str, Any]:
        """A flat, Arrow-friendly row: Numerical ``answer_eval`` as the evaluator's ``[lo, hi]`` strings."""
        rng = self.answer_range
        if self.answer_eval is None:
            strings: list[str] = []
        elif rng is not None:
            strings = evaluator_answer_eval(self.answer_eval, "numerical")
        else:
            strings = list(self.answer_eval)
        return {
            "data_id": self.data_id,
            "image_id": self.image_id,
            "question": self.question,
            "answer": list(self.answer or []),
            "answer_eval": strings,
            "answer_range": rng or [],
            "answer_wikidata": self.answer_wikidata,
            "data_split": self.data_split,
            "question_type": self.question_type,
            "entity_id": self.entity_id,
            "entity_text": self.entity_text,
            "line": self.line,
        }


def parse_question(row: dict[str, Any], line: int, require_answers: bool | None = None) -> InfoSeekQuestion:
    """Validate one annotation row; ValueError names the field."""
    for name in ("data_id", "image_id", "question", "data_split"):
        value = row.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"field '{name}' must be a non-empty string, got {value!r}"[:200])
    split = row["data_split"]
    need = (not split.startswith("test")) if require_answers is None else require_answers
    answer, answer_eval = row.get("answer"), row.get("answer_eval")
    if answer is not None or need:
        if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
            raise ValueError(f"field 'answer' must be a list of strings, got {answer!r}"[:200])
    if answer_eval is not None or need:
        check_answer_eval(answer_eval)
    qtype = row.get("question_type")
    if qtype is not None and not isinstance(qtype, str):
        raise ValueError(f"field 'question_type' must be a string, got {qtype!r}")
    return InfoSeekQuestion(
        data_id=row["data_id"],
        image_id=row["image_id"],
        question=row["question"],
        answer=answer,
        answer_eval=answer_eval,
        data_split=split,
        line=line,
        question_type=qtype,
    )


def iter_questions(
    path: str | Path,
    errors: MalformedRows | None = None,
    require_answers: bool | None = None,
    qtypes: Mapping[str, str] | None = None,
    entities: Mapping[str, tuple[str, str]] | None = None,
) -> Iterator[InfoSeekQuestion]:
    """Yield the valid rows of ``infoseek_{split}.jsonl``; ``qtypes`` / ``entities`` join the side files."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        try:
            question = parse_question(row, line, require_answers)
        except ValueError as exc:
            errors.report(path, line, str(exc))
            continue
        if qtypes is not None or entities is not None:
            extra: dict[str, Any] = {}
            if qtypes is not None and question.data_id in qtypes:
                extra["question_type"] = qtypes[question.data_id]
            if entities is not None and question.data_id in entities:
                extra["entity_id"], extra["entity_text"] = entities[question.data_id]
            question = InfoSeekQuestion(**{**question.__dict__, **extra})
        yield question


def iter_qtypes(path: str | Path, errors: MalformedRows | None = None) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line, data_id, question_type)`` of a ``*_qtype.jsonl`` file."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        data_id, qtype = row.get("data_id"), row.get("question_type")
        if not isinstance(data_id, str) or not data_id:
            errors.report(path, line, f"field 'data_id' must be a non-empty string, got {data_id!r}")
        elif not isinstance(qtype, str) or not qtype:
            errors.report(path, line, f"field 'question_type' must be a non-empty string, got {qtype!r}")
        else:
            yield line, data_id, qtype


def load_qtypes(path: str | Path, errors: MalformedRows | None = None) -> dict[str, str]:
    """``{data_id: question_type}``; the same id with two different types is an error."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, data_id, qtype in iter_qtypes(path, errors):
        if data_id in out and out[data_id] != qtype:
            raise RowError(
                path,
                line,
                f"data_id {data_id!r} has question_type {qtype!r} here but {out[data_id]!r} at line {first_line[data_id]}",
            )
        out[data_id] = qtype
        first_line.setdefault(data_id, line)
    return out


@dataclass(frozen=True)
class EntityLink:
    """One row of ``*_withkb.jsonl``: the Wikidata entity a question is about."""

    data_id: str
    entity_id: str
    entity_text: str
    line: int


def iter_withkb(path: str | Path, errors: MalformedRows | None = None) -> Iterator[EntityLink]:
    """Yield the rows of an ``infoseek_{split}_withkb.jsonl`` file."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        values = [row.get(name) for name in ("data_id", "entity_id", "entity_text")]
        bad = [
            name for name, v in zip(("data_id", "entity_id", "entity_text"), values) if not isinstance(v, str) or not v
        ]
        if bad:
            errors.report(path, line, f"field '{bad[0]}' must be a non-empty string, got {row.get(bad[0])!r}")
            continue
        yield EntityLink(*values, line=line)


def load_entities(path: str | Path, errors: MalformedRows | None = None) -> dict[str, tuple[str, str]]:
    """``{data_id: (entity_id, entity_text)}`` from a ``*_withkb.jsonl`` file."""
    return {link.data_id: (link.entity_id, link.entity_text) for link in iter_withkb(path, errors)}


def question_features():
    from datasets import Features, Value

    from ..hf_datasets import list_of

    string = Value("string")
    return Features(
        {
            "data_id": string,
            "image_id": string,
            "question": string,
            "answer": list_of(string),
            "answer_eval": list_of(string),
            "answer_range": list_of(Value("float64")),
            "answer_wikidata": Value("float64"),
            "data_split": string,
            "question_type": string,
            "entity_id": string,
            "entity_text": string,
            "line": Value("int64"),
        }
    )


def _question_rows(
    path: str, require_answers: bool | None, qtype_path: str | None, withkb_path: str | None, errors: MalformedRows
) -> Iterator[dict[str, Any]]:
    qtypes = load_qtypes(qtype_path, errors) if qtype_path else None
    entities = load_entities(withkb_path, errors) if withkb_path else None
    for question in iter_questions(path, errors, require_answers, qtypes, entities):
        yield question.to_dict()


def questions_dataset(
    path: str | Path,
    qtype_path: str | Path | None = None,
    withkb_path: str | Path | None = None,
    errors: MalformedRows | None = None,
    require_answers: bool | None = None,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
):
    """InfoSeek questions as a ``datasets.Dataset``, optionally joined with question types and entities.

    Columns: ``data_id, image_id, question, answer, answer_eval`` (Numerical ones as the
    evaluator's ``[lo, hi]`` strings), ``answer_range`` (``[lo, hi]`` floats for
    Numerical, else empty), ``answer_wikidata``, ``data_split``, ``question_type``,
    ``entity_id``, ``entity_text``, ``line``.
    """
    from ..hf_datasets import dataset_from_rows

    for side in (qtype_path, withkb_path):
        if side is not None and not Path(side).is_file():
            raise MissingFileError(side)
    return dataset_from_rows(
        _question_rows,
        source=path,
        extra_sources=[p for p in (qtype_path, withkb_path) if p is not None],
        row_kwargs={
            "path": str(path),
            "require_answers": require_answers,
            "qtype_path": str(qtype_path) if qtype_path else None,
            "withkb_path": str(withkb_path) if withkb_path else None,
        },
        features=question_features(),
        errors=errors,
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
    )
