"""Retrieval recall@k as an ``evaluate`` metric: a thin wrapper over :mod:`eval.retrieval`."""

import datasets
import evaluate

from eval.retrieval import passage_recall_at_k, pseudo_recall_at_k, recall_at_k

_DESCRIPTION = """\
Recall@k of a retriever, as used for KB-VQA: entity/article level (a positive id among
the first k distinct retrieved ids; E-VQA wikipedia_url, InfoSeek Wikidata QID),
passage level (M2KR pos_item_ids, no de-duplication), or M2KR pseudo-recall (an answer
is a substring of a top-k passage text).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per query, the ranked retrieved ids (level "article" / "passage") or passage texts ("pseudo").
    references: per query, the positive ids ("article" / "passage") or the answers ("pseudo").
    ks: the cut-offs (default [1, 5, 10, 20]).
    level: "article" (default), "passage" or "pseudo".
    on_empty: "error" (default) or "miss" for queries without positives/answers.
Returns:
    {"recall@1": ..., "recall@5": ..., ...} as fractions in [0, 1].
Example:
    >>> metric = evaluate.load("eval/metrics/retrieval_recall")
    >>> metric.compute(predictions=[["a", "a", "b"]], references=[["b"]], ks=[2])
    {'recall@2': 1.0}
"""

_FUNCTIONS = {"article": recall_at_k, "passage": passage_recall_at_k, "pseudo": pseudo_recall_at_k}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, ks=(1, 5, 10, 20), level="article", on_empty="error"):
        if level not in _FUNCTIONS:
            raise ValueError(f"level must be one of {sorted(_FUNCTIONS)}, got {level!r}")
        recalls = _FUNCTIONS[level](predictions, references, ks=list(ks), on_empty=on_empty)
        return {f"recall@{k}": value for k, value in recalls.items()}
