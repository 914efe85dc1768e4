"""Scoring a set of E-VQA predictions: per question and aggregated, EM-only or official EM-then-BEM.

The official code scores one example at a time; here all exact matches are computed
first and the remaining (question, reference, candidate) triples go through BEM in
batches, which gives the same numbers (a question's score is the max over its
references, and EM = 1.0 already wins that max).

Policy for ids (the official E-VQA code has no file-level driver; this is ours):

* a prediction whose ``question_id`` is not a row of the reference is an **error**
  (the files do not belong together);
* a reference question without a prediction is, by default, **scored 0** and
  counted in ``n_missing`` (accuracy stays over the whole reference file, comparable
  with published numbers). ``missing="ignore"`` scores only the predicted questions
  (e.g. single-hop-only runs), ``missing="error"`` refuses;
* predictions for reference rows that were malformed (and skipped in lenient mode)
  are dropped and counted in ``n_skipped_reference``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

from ret2vqa.errors import InputError

from .bem import AnswerEquivalenceScorer, BEMExample
from .data import EVQAQuestion
from .metric import QUESTION_TYPES, bem_reference, exact_match

MissingPolicy = Literal["zero", "ignore", "error"]

EM_ONLY_NOTE = (
    "exact match only (no BEM model was given): a lower bound of the official E-VQA score "
    "(exact match, then BEM), not the official number"
)


@dataclass
class EVQAExampleScore:
    question_id: int
    question_type: str
    prediction: str | None
    score: float
    exact_match: bool
    bem_score: float | None = None  # highest BEM probability over the references (when BEM ran)
    missing: bool = False


@dataclass
class EVQAResult:
    """Per-question scores plus the bookkeeping behind the summary."""

    examples: list[EVQAExampleScore]
    metric: str
    n_missing: int = 0
    n_skipped_reference: int = 0
    missing_policy: str = "zero"
    scorer_info: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _summary(examples: Sequence[EVQAExampleScore]) -> dict[str, Any]:
        correct = sum(e.score for e in examples)
        n = len(examples)
        return {"accuracy": round(100.0 * correct / n, 2) if n else 0.0, "n": n, "correct": int(correct)}

    def to_dict(self) -> dict[str, Any]:
        """The ``ret2vqa score evqa`` JSON: ``accuracy`` (0–100), ``metric``, ``n``, ``by_question_type``, ..."""
        overall = self._summary(self.examples)
        out: dict[str, Any] = {
            "accuracy": overall["accuracy"],
            "metric": self.metric,
            "n": overall["n"],
            "correct": overall["correct"],
        }
        by_type = {}
        for qtype in QUESTION_TYPES:
            subset = [e for e in self.examples if e.question_type == qtype]
            if subset:
                by_type[qtype] = self._summary(subset)
        out["by_question_type"] = by_type
        for name, keep in (
            ("single_hop", lambda e: e.question_type != "2_hop"),
            ("two_hop", lambda e: e.question_type == "2_hop"),
        ):
            subset = [e for e in self.examples if keep(e)]
            if subset:
                out[name] = self._summary(subset)
        out["n_missing"] = self.n_missing
        out["missing_policy"] = self.missing_policy
        if self.n_skipped_reference:
            out["n_skipped_reference"] = self.n_skipped_reference
        if self.metric == "exact_match":
            out["note"] = EM_ONLY_NOTE
        out.update(self.scorer_info)
        return out

    def per_example(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.examples]


def _as_prediction_map(predictions: Mapping[int, str] | Iterable[Mapping[str, Any]]) -> dict[int, str]:
    if isinstance(predictions, Mapping):
        return dict(predictions)
    out: dict[int, str] = {}
    for row in predictions:
        qid = row["question_id"]
        if qid in out:
            raise InputError(f"duplicate prediction for question_id {qid!r}")
        out[qid] = row["prediction"]
    return out


def _where(q: EVQAQuestion) -> str:
    return f"question_id {q.question_id} (line {q.line})"


def score_predictions(
    predictions: Mapping[int, str] | Iterable[Mapping[str, Any]],
    rows: Sequence[EVQAQuestion | None],
    bem: AnswerEquivalenceScorer | None = None,
    missing: MissingPolicy = "zero",
) -> EVQAResult:
    """Score ``predictions`` (``{question_id: answer}`` or ``[{"question_id", "prediction"}]``).

    ``rows`` is what :func:`eval.evqa.load_questions` returns: a list indexed by
    question id where ``None`` marks a malformed (skipped) record. ``bem`` switches on
    the official EM-then-BEM metric; without it the result is EM only and says so.
    """
    if missing not in ("zero", "ignore", "error"):
        raise ValueError(f"missing must be 'zero', 'ignore' or 'error', got {missing!r}")
    preds = _as_prediction_map(predictions)
    by_id = {q.question_id: q for q in rows if q is not None}
    skipped_ids = {i for i, q in enumerate(rows) if q is None}
    n_skipped = 0
    unknown = []
    for qid, prediction in preds.items():
        if qid in by_id:
            if not isinstance(prediction, str):
                raise InputError(f"prediction for question_id {qid} must be a string, got {prediction!r}")
        elif qid in skipped_ids:
            n_skipped += 1
        else:
            unknown.append(qid)
    if unknown:
        shown = ", ".join(repr(u) for u in sorted(unknown, key=str)[:5])
        raise InputError(
            f"{len(unknown)} prediction(s) have a question_id that is not a row of the reference "
            f"(valid: 0..{len(rows) - 1}): {shown}{' ...' if len(unknown) > 5 else ''}"
        )
    for q in by_id.values():
        if q.question_type not in QUESTION_TYPES:
            raise InputError(
                f"{_where(q)}: unknown question type {q.question_type!r}; valid options are {list(QUESTION_TYPES)}"
            )

    examples: list[EVQAExampleScore] = []
    pending: list[tuple[EVQAExampleScore, EVQAQuestion, str]] = []
    n_missing = 0
    for qid in sorted(by_id):
        q = by_id[qid]
        if qid not in preds:
            n_missing += 1
            if missing == "error":
                continue
            if missing == "zero":
                examples.append(EVQAExampleScore(qid, q.question_type, None, 0.0, False, missing=True))
            continue
        candidate = preds[qid]
        try:
            matched = any([exact_match(ref, candidate, q.question_type) for ref in q.answers])
        except ValueError as exc:
            raise InputError(f"{_where(q)}: {exc}") from None
        example = EVQAExampleScore(qid, q.question_type, candidate, 1.0 if matched else 0.0, matched)
        examples.append(example)
        if not matched and bem is not None:
            pending.append((example, q, candidate))
    if missing == "error" and n_missing:
        raise InputError(f"{n_missing} reference question(s) have no prediction (missing policy 'error')")

    scorer_info: dict[str, Any] = {}
    if bem is not None:
        queries = [
            BEMExample(question=q.question, reference=bem_reference(ref, q.question_type), candidate=cand)
            for _, q, cand in pending
            for ref in q.answers
        ]
        probabilities = iter(bem.score(queries))
        for example, q, _ in pending:
            probs = [next(probabilities) for _ in q.answers]
            example.bem_score = max(probs)
            example.score = max(float(p >= bem.threshold) for p in probs)
        scorer_info = bem.describe()
    return EVQAResult(
        examples=examples,
        metric="bem" if bem is not None else "exact_match",
        n_missing=n_missing,
        n_skipped_reference=n_skipped,
        missing_policy=missing,
        scorer_info=scorer_info,
    )


def evaluate_predictions(
    preds: Mapping[int, str] | Iterable[Mapping[str, Any]],
    rows: Sequence[EVQAQuestion | None],
    bem: AnswerEquivalenceScorer | None = None,
    missing: MissingPolicy = "zero",
) -> dict[str, Any]:
    """The summary dict of :func:`score_predictions` (the JSON ``ret2vqa score evqa`` prints)."""
    return score_predictions(preds, rows, bem=bem, missing=missing).to_dict()
