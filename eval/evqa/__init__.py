"""Encyclopedic-VQA: question CSVs, the KB json, image files, and the official answer metric.

Light to import (standard library only); ``torch``/``transformers``/``datasets`` load
only inside the functions that need them.
"""

from .bem import AnswerEquivalenceScorer, BEMConfig, BEMExample, TransformersBEM
from .data import (
    EVQA_COLUMNS,
    EVQAQuestion,
    iter_questions,
    iter_records,
    load_questions,
    question_features,
    questions_dataset,
)
from .images import EVQAImageResolver, landmarks_relative_path, load_inaturalist_id2name
from .kb import KBEntry, iter_kb, kb_dataset, kb_features, parse_kb_entry
from .metric import (
    CONTRACTIONS,
    DIGIT_MAP,
    PUNCTUATION_CHARACTERS,
    QUESTION_TYPES,
    SINGLE_HOP_TYPES,
    bem_reference,
    evaluate_example,
    exact_match,
    list_iou,
    multianswer_exact_match,
    preprocess_answer,
    reference_problem,
    singleanswer_exact_match,
    split_references,
)
from .scoring import EVQAExampleScore, EVQAResult, evaluate_predictions, score_predictions

__all__ = [
    "AnswerEquivalenceScorer",
    "BEMConfig",
    "BEMExample",
    "CONTRACTIONS",
    "DIGIT_MAP",
    "EVQAExampleScore",
    "EVQAImageResolver",
    "EVQAQuestion",
    "EVQAResult",
    "EVQA_COLUMNS",
    "KBEntry",
    "PUNCTUATION_CHARACTERS",
    "QUESTION_TYPES",
    "SINGLE_HOP_TYPES",
    "TransformersBEM",
    "bem_reference",
    "evaluate_example",
    "evaluate_predictions",
    "exact_match",
    "iter_kb",
    "iter_questions",
    "iter_records",
    "kb_dataset",
    "kb_features",
    "landmarks_relative_path",
    "list_iou",
    "load_inaturalist_id2name",
    "load_questions",
    "multianswer_exact_match",
    "parse_kb_entry",
    "preprocess_answer",
    "question_features",
    "questions_dataset",
    "reference_problem",
    "score_predictions",
    "singleanswer_exact_match",
    "split_references",
]
