"""The official InfoSeek answer metric (``infoseek_eval.py`` of ``edchengg/infoseek_eval``), exactly.

Per question, by ``question_type.lower()``:

* ``time`` and everything that is not ``numerical`` (String): SQuAD-style
  :func:`normalize_answer` (lower-case, *delete* ``string.punctuation``, articles to a
  space, collapse whitespace), then exact match against any ``answer_eval`` string.
  The ±1-year tolerance of Time questions lives in the data, not in the code.
* ``numerical``: the gold is ``[lo, hi]`` (the reference's ``range``); the prediction is
  parsed by :func:`process_numerical_answer` (first two numbers; quirks included) and
  scored by :func:`metric_numerical_range` (inside, or range IoU ≥ 0.5).

Per split the four scores (pooled, Time, Numerical, String) are ×100 and rounded to 2
decimals; the final score is the harmonic mean of the two *rounded* split scores, a
zero replaced by 1e-12, rounded to 2 decimals.
"""

from __future__ import annotations

import re
import string
from typing import Sequence, Union

Number = float
NumericAnswer = Union[float, list]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?")


def normalize_answer(text: str) -> str:
    """lower-case → delete punctuation → ``\\b(a|an|the)\\b`` to space → collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(prediction: str, ground_truths: Sequence[str]) -> int:
    """1 if the prediction matches any ground truth after normalisation (ValueError when there are none)."""
    if not ground_truths:
        raise ValueError("no ground-truth answers to compare with")
    return int(max(exact_match_score(prediction, gt) for gt in ground_truths))


def safe_division(x: float, y: float) -> float:
    return x / y if y != 0 else 0


def in_range(number: float, range_list: Sequence[float]) -> bool:
    lo, hi = range_list
    return lo <= number <= hi


def clean_str_range(text: str) -> str:
    """Space out every ``-`` whose previous character is a digit: ``'9-10'`` → ``'9 - 10'``."""
    return "".join(" - " if ch == "-" and i >= 1 and text[i - 1].isdigit() else ch for i, ch in enumerate(text))


def process_numerical_answer(string_number: str) -> NumericAnswer:
    """Parse a numeric prediction: a scalar, a ``[low, high]`` range, or ``[0, 0]`` when there is no number.

    Quirks reproduced on purpose: a leading ``.`` is stripped (``".5"`` → 5.0); with
    more than one ``.`` left only the part before the first is kept; of two numbers
    ``a > b`` yields the scalar ``a`` (``"20 to 10"`` → 20.0); only the first two count.
    """
    text = clean_str_range(string_number)
    numbers = []
    for match in _NUMBER.findall(text):
        match = match.replace(",", "").strip(".")
        if match.count(".") > 1:
            match = match.split(".")[0]
        numbers.append(float(match))
    numbers = numbers[:2]
    if len(numbers) == 2:
        first, second = numbers
        return [first, second] if first <= second else first
    if len(numbers) == 1:
        return numbers[0]
    return [0, 0]


def range_intersection_over_union(x_list: Sequence[float], y_list: Sequence[float]) -> float:
    """IoU of two ranges; each length gets +1e-12 so that points do not divide by zero."""
    min_1, max_1 = min(x_list), max(x_list)
    min_2, max_2 = min(y_list), max(y_list)
    overlap = max(0.0, min(max_1, max_2) - max(min_1, min_2))
    length_x = (max_1 - min_1) + 1e-12
    length_y = (max_2 - min_2) + 1e-12
    return safe_division(overlap, length_x + length_y - overlap)


def metric_numerical_range(pred: NumericAnswer | tuple, answer: NumericAnswer | tuple, tolerance: float = 0.1) -> int:
    """1 if a scalar prediction lies in the gold range, or a range prediction is inside it or has IoU ≥ 0.5.

    A scalar gold ``x`` becomes ``[x(1-tolerance), x(1+tolerance)]`` (never the case with
    InfoSeek references, whose gold is always a range).
    """
    answer = list(answer) if isinstance(answer, tuple) else answer
    pred = list(pred) if isinstance(pred, tuple) else pred
    if not isinstance(answer, list):
        answer = [answer * (1 - tolerance), answer * (1 + tolerance)]
    if not isinstance(pred, list):
        return 1 if in_range(pred, answer) else 0
    if answer[0] <= pred[0] <= answer[1] and answer[0] <= pred[1] <= answer[1]:
        return 1
    return 1 if range_intersection_over_union(pred, answer) >= 0.5 - 1e-12 else 0


def harmonic_mean(*args: float) -> float:
    """Harmonic mean with each zero replaced by 1e-12 (so ``hmean(x, 0)`` ≈ 2e-12, not an error)."""
    safe = [a if a != 0 else 1e-12 for a in args]
    return len(safe) / sum(1.0 / v for v in safe)


def score_answer(prediction: str, answer_eval: Sequence[str], question_type: str) -> int:
    """0/1 for one question. ``answer_eval`` is the evaluator's form: ``[lo, hi]`` strings for Numerical."""
    qtype = question_type.lower()
    if qtype == "numerical":
        gold = [float(a) for a in answer_eval]
        return metric_numerical_range(process_numerical_answer(prediction), gold)
    return metric_max_over_ground_truths(prediction, answer_eval)


def split_scores(scored: Sequence[tuple[str, int]]) -> dict[str, float]:
    """The official per-split dict from ``(question_type, 0/1)`` pairs: pooled score and per-type means, ×100, 2 dp."""
    time = [s for t, s in scored if t.lower() == "time"]
    num = [s for t, s in scored if t.lower() == "numerical"]
    other = [s for t, s in scored if t.lower() not in ("time", "numerical")]
    pooled = time + num + other
    return {
        "score": round(safe_division(sum(pooled), len(pooled)) * 100, 2),
        "score_time": round(safe_division(sum(time), len(time)) * 100, 2),
        "score_num": round(safe_division(sum(num), len(num)) * 100, 2),
        "score_string": round(safe_division(sum(other), len(other)) * 100, 2),
    }


def final_score(unseen_question: dict[str, float], unseen_entity: dict[str, float]) -> dict[str, object]:
    """``{"final_score", "unseen_question_score", "unseen_entity_score"}`` from the two split dicts."""
    return {
        "final_score": round(harmonic_mean(unseen_question["score"], unseen_entity["score"]), 2),
        "unseen_question_score": unseen_question,
        "unseen_entity_score": unseen_entity,
    }
