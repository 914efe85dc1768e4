"""InfoSeek accuracy as an ``evaluate`` metric: a thin wrapper over :mod:`eval.infoseek`."""

import datasets
import evaluate

from eval.infoseek import InfoSeekReference, score_predictions

_DESCRIPTION = """\
The official InfoSeek metric (infoseek_eval.py): normalised exact match for String and
Time questions, range matching for Numerical ones, per split (unseen_question /
unseen_entity) and the harmonic mean of the two split scores as the final score.
"""

_CITATION = """\
@inproceedings{chen2023infoseek,
  title={Can Pre-trained Vision and Language Models Answer Visual Information-Seeking Questions?},
  author={Chen, Yang and Hu, Hexiang and Luan, Yi and Sun, Haitian and Changpinyo, Soravit and Ritter, Alan and Chang, Ming-Wei},
  booktitle={EMNLP},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of answer strings.
    references: list of dicts in the evaluator's form, one per prediction:
        {"answer_eval": [str, ...], "question_type": "String" | "Numerical" | "Time",
         "data_split": "val_unseen_question" | "val_unseen_entity" | ...}.
        Numerical answer_eval is [low, high] as strings (what eval.infoseek.load_references
        produces from the raw {"wikidata", "range"} form).
Returns:
    {"final_score", "unseen_question_score": {"score", "score_time", "score_num", "score_string"},
     "unseen_entity_score": {...}}: the official result, x100, rounded to 2 decimals.
Example:
    >>> metric = evaluate.load("eval/metrics/infoseek_accuracy")
    >>> metric.compute(predictions=["1826"], references=[{"answer_eval": ["1826", "1825", "1827"],
    ...     "question_type": "Time", "data_split": "val_unseen_question"}])["unseen_question_score"]["score"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InfoseekAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": {
                        "answer_eval": datasets.Sequence(datasets.Value("string")),
                        "question_type": datasets.Value("string"),
                        "data_split": datasets.Value("string"),
                    },
                }
            ),
            reference_urls=["https://github.com/open-vision-language/infoseek"],
        )

    def _compute(self, predictions, references):
        refs = {}
        preds = {}
        for i, (prediction, ref) in enumerate(zip(predictions, references)):
            data_id = str(i)
            refs[data_id] = InfoSeekReference(
                data_id, ref["question_type"], tuple(ref["answer_eval"]), ref["data_split"]
            )
            preds[data_id] = prediction
        return score_predictions(preds, refs).to_dict()
