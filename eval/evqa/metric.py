"""The official Encyclopedic-VQA answer metric: answer normalisation, exact match, EM-then-BEM.

This reproduces ``encyclopedic_vqa/evaluation_utils.py`` of google-research
(commit 5b09c22) step by step, including its quirks, so that our numbers can be
compared with published ones:

* :func:`preprocess_answer` applies, in this order: lower-case and ``\\n``/``\\t`` to
  space and strip; delete every ``'<extra_id_0> '`` when the string starts with it;
  *delete* punctuation (``string.punctuation + "‘’´`_"``); replace
  ``\\b(the answer is|a|an|the)\\b`` by a space; map each whitespace token through
  :data:`DIGIT_MAP` then :data:`CONTRACTIONS`; collapse whitespace.
* single answers (``templated``, ``automatic``, ``2_hop``) match by string equality
  after preprocessing; a reference that preprocesses to ``""`` is an error.
* ``multi_answer`` references are ``&&``-joined items; the *raw, case-sensitive*
  candidate is split on ``' and '``, ``' & '`` and ``','``; correct iff the IoU of the
  two preprocessed sets is ≥ 0.5.
* the official score of one (question, reference, candidate) is 1.0 on exact match,
  otherwise the thresholded BEM score (:mod:`eval.evqa.bem`); a question's score is
  the max over its ``|``-separated annotator references.
"""

from __future__ import annotations

import re
import string
from typing import Callable, Sequence

QUESTION_TYPES: tuple[str, ...] = ("templated", "automatic", "multi_answer", "2_hop")
"""The four E-VQA question types; any other value is an error, as in the official code."""

SINGLE_HOP_TYPES: tuple[str, ...] = ("templated", "automatic", "multi_answer")

# Question types whose reference is an ``&&`` list for BEM (the official code also accepts legacy names).
BEM_LIST_TYPES: tuple[str, ...] = ("list", "multianswer", "multi_answer")

PUNCTUATION_CHARACTERS: str = string.punctuation + "‘’´`_"

DIGIT_MAP: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "entailment": "yes",
    "true": "yes",
    "contradiction": "no",
    "false": "no",
}

# The VQA-eval contraction table used by the official E-VQA code, verbatim (including its
# odd entries such as ``somebody'd -> somebodyd``). Because punctuation is deleted and the
# text lower-cased before the lookup, only the lower-case, apostrophe-free keys can fire.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip

LLM_SPAN_PREFIX = "<extra_id_0> "
_ARTICLES = re.compile(r"\b(the answer is|a|an|the)\b")
_PUNCTUATION = frozenset(PUNCTUATION_CHARACTERS)


def preprocess_answer(answer: str) -> str:
    """Normalise an answer exactly as the official E-VQA ``preprocess_answer``."""
    answer = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    if answer.startswith(LLM_SPAN_PREFIX):
        answer = answer.replace(LLM_SPAN_PREFIX, "")
    answer = "".join("" if c in _PUNCTUATION else c for c in answer)
    answer = _ARTICLES.sub(" ", answer)
    answer = " ".join(_standardize_token(w) for w in answer.split())
    return " ".join(answer.split())


def _standardize_token(word: str) -> str:
    """DIGIT_MAP first, then CONTRACTIONS, as officially (``'none'`` → ``'0'``; ``'dont'`` → ``"don't"``)."""
    word = DIGIT_MAP.get(word, word)
    return CONTRACTIONS.get(word, word)


def split_multi_answer_reference(reference: str) -> list[str]:
    """The preprocessed, non-empty items of an ``&&``-joined multi-answer reference."""
    return [item for item in (preprocess_answer(a) for a in reference.split("&&")) if item]


def split_multi_answer_candidate(candidate: str) -> list[str]:
    """The preprocessed, non-empty items of a candidate list answer (split on ' and ', ' & ', ',')."""
    items = candidate.replace(" and ", ",").replace(" & ", ",").split(",")
    return [item for item in (preprocess_answer(a) for a in items) if item]


def singleanswer_exact_match(reference: str, candidate: str) -> bool:
    """Exact match of one reference and one candidate after :func:`preprocess_answer`."""
    ref = preprocess_answer(reference)
    if not ref:
        raise ValueError(f"reference answer {reference!r} is empty after preprocessing")
    return ref == preprocess_answer(candidate)


def list_iou(target: Sequence[str], prediction: Sequence[str]) -> float:
    """|intersection| / |union| of the two item sets; ``target`` must not be empty."""
    if not target:
        raise ValueError("target list should not be empty")
    target_set, prediction_set = set(target), set(prediction)
    return len(target_set & prediction_set) / len(target_set | prediction_set)


def multianswer_exact_match(reference: str, candidate: str, iou_threshold: float = 0.5) -> bool:
    """Multi-answer match: IoU of the item sets ≥ ``iou_threshold`` (0.5 officially)."""
    reference_items = split_multi_answer_reference(reference)
    if not reference_items:
        raise ValueError(f"multi-answer reference {reference!r} is empty after preprocessing")
    return list_iou(reference_items, split_multi_answer_candidate(candidate)) >= iou_threshold


def check_question_type(question_type: str) -> None:
    if question_type not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {question_type!r}; valid options are {list(QUESTION_TYPES)}")


def exact_match(reference: str, candidate: str, question_type: str) -> bool:
    """The official EM for one reference: IoU ≥ 0.5 for ``multi_answer``, string equality otherwise."""
    if not reference:
        raise ValueError("reference answer cannot be empty")
    check_question_type(question_type)
    if question_type == "multi_answer":
        return multianswer_exact_match(reference, candidate)
    return singleanswer_exact_match(reference, candidate)


def split_references(answer: str) -> list[str]:
    """The annotator references of an E-VQA ``answer`` cell (``|``-separated)."""
    return answer.split("|")


def reference_problem(answer: str, question_type: str) -> str | None:
    """Why the official evaluator would raise on this ``answer`` cell, or ``None`` if it is scorable."""
    if question_type not in QUESTION_TYPES:
        return f"unknown question type {question_type!r} (valid: {', '.join(QUESTION_TYPES)})"
    for i, reference in enumerate(split_references(answer)):
        where = f"reference {i + 1} of answer {answer!r}"
        if not reference:
            return f"{where} is empty"
        if question_type == "multi_answer":
            if not split_multi_answer_reference(reference):
                return f"{where} has no item left after preprocessing"
        elif not preprocess_answer(reference):
            return f"{where} is empty after preprocessing"
    return None


def bem_reference(reference: str, question_type: str) -> str:
    """The reference text BEM sees: ``&&`` becomes ``,`` for list questions (as officially)."""
    return reference.replace("&&", ",") if question_type in BEM_LIST_TYPES else reference


def evaluate_example(
    question: str,
    reference_list: Sequence[str],
    candidate: str,
    question_type: str,
    bem_score: Callable[[str, str, str], float] | None = None,
    threshold: float = 0.5,
) -> float:
    """The official per-question score: max over references of (1.0 if EM else BEM ≥ threshold).

    ``bem_score(question, reference, candidate)`` returns BEM's probability of equivalence
    (the reference already ``&&``→``,`` converted by the caller's scorer, see
    :func:`bem_reference`). Without it the result is the EM-only lower bound.
    For batched scoring of many questions use :func:`eval.evqa.score_predictions`.
    """
    if not reference_list:
        raise ValueError("reference list cannot be empty")
    scores = []
    for reference in reference_list:
        if exact_match(reference, candidate, question_type):
            scores.append(1.0)
        elif bem_score is None:
            scores.append(0.0)
        else:
            probability = bem_score(question, bem_reference(reference, question_type), candidate)
            scores.append(float(probability >= threshold))
    return max(scores)
