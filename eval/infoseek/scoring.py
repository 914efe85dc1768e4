"""Scoring InfoSeek predictions into the official result dict.

Follows ``infoseek_eval.evaluate``: references get their question type from the qtype
file (Numerical ``answer_eval`` becomes ``[str(lo), str(hi)]``); each prediction whose
``data_id`` is in the reference goes to *unseen_question* if its ``data_split`` ends with
``unseen_question`` and to *unseen_entity* otherwise. As officially:

* predictions with an unknown ``data_id`` are **ignored** (counted in ``unknown_ids``);
* reference questions without a prediction are **not counted** (the denominators are
  the predicted questions only; counted in ``missing_ids``);
* a question type other than Time/Numerical is scored as String (counted).

Where the official script would silently do something nobody wants we raise instead:
a ``data_id`` predicted twice (officially counted twice), a reference without a
question type (officially a ``KeyError``), and an ``answer_eval`` it would crash on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ret2vqa.errors import InputError
from ret2vqa.io import MalformedRows, RowError, iter_jsonl

from .data import QUESTION_TYPES, evaluator_answer_eval, load_qtypes
from .metric import final_score, score_answer, split_scores

UNSEEN_QUESTION = "unseen_question"
UNSEEN_ENTITY = "unseen_entity"


@dataclass(frozen=True)
class InfoSeekReference:
    """A reference in the evaluator's form (its ``qid2example`` entries)."""

    data_id: str
    question_type: str
    answer_eval: tuple[str, ...]
    data_split: str
    line: int | None = None

    @property
    def split(self) -> str:
        """``unseen_question`` iff ``data_split`` ends with it; everything else counts as ``unseen_entity``."""
        return UNSEEN_QUESTION if self.data_split.endswith(UNSEEN_QUESTION) else UNSEEN_ENTITY


def make_reference(
    row: Mapping[str, Any], question_type: str | None = None, line: int | None = None
) -> InfoSeekReference:
    """A reference from a raw (or already converted) annotation row; ValueError names the problem."""
    data_id = row.get("data_id")
    if not isinstance(data_id, str) or not data_id:
        raise ValueError(f"field 'data_id' must be a non-empty string, got {data_id!r}")
    qtype = question_type if question_type is not None else row.get("question_type")
    if not isinstance(qtype, str):
        raise ValueError(f"no question type for data_id {data_id!r} (not in the qtype file)")
    split = row.get("data_split")
    if not isinstance(split, str):
        raise ValueError(f"field 'data_split' must be a string, got {split!r}")
    if "answer_eval" not in row:
        raise ValueError("missing field 'answer_eval'")
    answers = evaluator_answer_eval(row["answer_eval"], qtype)
    return InfoSeekReference(data_id, qtype, tuple(answers), split, line)


def prepare_references(
    rows: Iterable[Mapping[str, Any]], qtypes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None = None
) -> dict[str, InfoSeekReference]:
    """``{data_id: InfoSeekReference}`` from reference rows and ``{data_id: type}`` (or qtype rows).

    Without ``qtypes`` each row must carry ``question_type`` (the evaluator's internal form).
    """
    if qtypes is not None and not isinstance(qtypes, Mapping):
        qtypes = {r["data_id"]: r["question_type"] for r in qtypes}
    out: dict[str, InfoSeekReference] = {}
    for row in rows:
        data_id = row.get("data_id")
        qtype = qtypes.get(data_id) if qtypes is not None else None
        ref = make_reference(row, qtype)
        if ref.data_id in out:
            raise InputError(f"duplicate reference data_id {ref.data_id!r}")
        out[ref.data_id] = ref
    return out


def load_references(
    ref_path: str | Path, qtype_path: str | Path | None = None, errors: MalformedRows | None = None
) -> dict[str, InfoSeekReference]:
    """Read a reference jsonl (raw official schema, or the evaluator's internal form) and its qtype file.

    With ``qtype_path`` the types come from it (as officially); without it every row
    must have ``question_type``. A reference row the official script could not score is
    reported with ``file:line`` to ``errors`` (strict when ``None``).
    """
    errors = errors if errors is not None else MalformedRows(strict=True)
    qtypes = load_qtypes(qtype_path, errors) if qtype_path is not None else None
    out: dict[str, InfoSeekReference] = {}
    for line, row in iter_jsonl(ref_path, errors):
        qtype = qtypes.get(row.get("data_id")) if qtypes is not None else None
        try:
            ref = make_reference(row, qtype, line)
        except ValueError as exc:
            message = str(exc)
            if qtypes is not None and qtype is None and isinstance(row.get("data_id"), str):
                message = f"data_id {row['data_id']!r} has no question type in {qtype_path}"
            errors.report(ref_path, line, message)
            continue
        if ref.data_id in out:
            raise RowError(ref_path, line, f"duplicate data_id {ref.data_id!r} (first at line {out[ref.data_id].line})")
        out[ref.data_id] = ref
    return out


@dataclass
class InfoSeekExampleScore:
    data_id: str
    split: str
    question_type: str
    prediction: str
    score: int


@dataclass
class InfoSeekResult:
    """Per-question scores, the official summary, and the id bookkeeping the official script keeps silent."""

    examples: list[InfoSeekExampleScore]
    unknown_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    unknown_question_types: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the official result: ``final_score``, ``unseen_question_score``, ``unseen_entity_score``."""
        per_split = {
            split: split_scores([(e.question_type, e.score) for e in self.examples if e.split == split])
            for split in (UNSEEN_QUESTION, UNSEEN_ENTITY)
        }
        return final_score(per_split[UNSEEN_QUESTION], per_split[UNSEEN_ENTITY])

    def counts(self) -> dict[str, Any]:
        """How many questions were scored per split, and what was ignored."""
        return {
            "n_scored": len(self.examples),
            "n_unseen_question": sum(e.split == UNSEEN_QUESTION for e in self.examples),
            "n_unseen_entity": sum(e.split == UNSEEN_ENTITY for e in self.examples),
            "n_unknown_ids": len(self.unknown_ids),
            "n_missing": len(self.missing_ids),
            "unknown_question_types": dict(self.unknown_question_types),
        }

    def per_example(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.examples]


def _prediction_pairs(predictions: Mapping[str, str] | Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    if isinstance(predictions, Mapping):
        return list(predictions.items())
    pairs, seen = [], set()
    for row in predictions:
        data_id = row["data_id"]
        if data_id in seen:
            raise InputError(f"duplicate prediction for data_id {data_id!r} (the official script would count it twice)")
        seen.add(data_id)
        pairs.append((data_id, row["prediction"]))
    return pairs


def score_predictions(
    predictions: Mapping[str, str] | Iterable[Mapping[str, Any]], references: Mapping[str, InfoSeekReference]
) -> InfoSeekResult:
    """Score ``{data_id: prediction}`` (or ``[{"data_id", "prediction"}]``) against prepared references."""
    examples: list[InfoSeekExampleScore] = []
    unknown: list[str] = []
    odd_types: dict[str, int] = {}
    known_types = {t.lower() for t in QUESTION_TYPES}
    seen = set()
    for data_id, prediction in _prediction_pairs(predictions):
        ref = references.get(data_id)
        if ref is None:
            unknown.append(data_id)
            continue
        if not isinstance(prediction, str):
            raise InputError(f"prediction for {data_id!r} must be a string, got {prediction!r}")
        seen.add(data_id)
        if ref.question_type.lower() not in known_types:
            odd_types[ref.question_type] = odd_types.get(ref.question_type, 0) + 1
        score = score_answer(prediction, ref.answer_eval, ref.question_type)
        examples.append(InfoSeekExampleScore(data_id, ref.split, ref.question_type, prediction, score))
    missing = [data_id for data_id in references if data_id not in seen]
    return InfoSeekResult(examples, unknown, missing, odd_types)


def empty_split_note(result: InfoSeekResult) -> str | None:
    """Why ``final_score`` is 0.0 when one of the two splits has no scored question, else ``None``.

    The official final score is the harmonic mean of the unseen-question and unseen-entity
    scores, and an empty split scores 0, so a perfect prediction file on a sample without,
    say, unseen-entity rows still gets ``final_score`` 0.0.
    """
    counts = result.counts()
    if not result.examples:
        return None
    empty = [name for name, n in ((UNSEEN_QUESTION, counts["n_unseen_question"]),
                                  (UNSEEN_ENTITY, counts["n_unseen_entity"])) if n == 0]
    if not empty:
        return None
    kept = UNSEEN_ENTITY if empty == [UNSEEN_QUESTION] else UNSEEN_QUESTION
    return (f"final_score is 0.0 because no {empty[0]} question was scored: the official final score is the "
            f"harmonic mean of the {UNSEEN_QUESTION} and {UNSEEN_ENTITY} scores, and an empty split scores 0; "
            f"see {kept}_score for the {counts['n_scored']} question(s) scored")


def evaluate_predictions(
    preds: Mapping[str, str] | Iterable[Mapping[str, Any]],
    refs: Mapping[str, InfoSeekReference] | Iterable[Mapping[str, Any]],
    qtypes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The official InfoSeek result dict.

    ``refs`` are prepared references (:func:`load_references`) or raw reference rows, in
    which case ``qtypes`` (``{data_id: type}`` or qtype rows) gives their types.
    """
    if not (isinstance(refs, Mapping) and all(isinstance(v, InfoSeekReference) for v in refs.values())):
        refs = prepare_references(refs.values() if isinstance(refs, Mapping) else refs, qtypes)
    return score_predictions(preds, refs).to_dict()
