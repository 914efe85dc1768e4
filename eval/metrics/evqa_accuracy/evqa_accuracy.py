"""E-VQA accuracy as an ``evaluate`` metric: a thin wrapper over :mod:`eval.evqa`."""

import datasets
import evaluate

from eval.evqa import EVQAQuestion, score_predictions

_DESCRIPTION = """\
The official Encyclopedic-VQA metric: exact match after the official answer
normalisation (multi_answer: item-set IoU >= 0.5), then BEM answer equivalence when a
BEM model is given. Without one the result is exact match only ("metric":
"exact_match"), a lower bound of the official score.
"""

_CITATION = """\
@inproceedings{mensink2023encyclopedic,
  title={Encyclopedic VQA: Visual questions about detailed properties of fine-grained categories},
  author={Mensink, Thomas and Uijlings, Jasper and Castrejon, Lluis and Goel, Arushi and Cadar, Felipe and Zhou, Howard and Sha, Fei and Araujo, Andr{\\'e} and Ferrari, Vittorio},
  booktitle={ICCV},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of answer strings.
    references: list of dicts, one per prediction, with the E-VQA CSV cells
        {"answer": "ref1|ref2" ('&&' joins the items of a multi_answer reference),
         "question": str, "question_type": "templated" | "automatic" | "multi_answer" | "2_hop"}.
    bem_model (optional): a BEM checkpoint (hub name or local dir) for the official EM-then-BEM score.
Returns:
    {"accuracy" (0-100), "metric", "n", "correct", "by_question_type", "single_hop", "two_hop", ...}
Example:
    >>> metric = evaluate.load("eval/metrics/evqa_accuracy")
    >>> metric.compute(predictions=["the Menger family"], references=[{"answer": "the Menger family",
    ...     "question": "Where does this hotel derive its name from?", "question_type": "automatic"}])["accuracy"]
    100.0
"""


def _question(i, ref):
    return EVQAQuestion(
        question_id=i,
        line=i,
        wikipedia_title="",
        wikipedia_url="",
        question_original="",
        question=ref["question"],
        question_type=ref["question_type"],
        answer=ref["answer"],
        evidence="",
        evidence_section_id="",
        evidence_section_title="",
        dataset_name="",
        dataset_category_id=None,
        wikipedia_url_used_in_train=None,
        encyclopedic_vqa_split="",
        dataset_image_ids="",
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EvqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": {
                        "answer": datasets.Value("string"),
                        "question": datasets.Value("string"),
                        "question_type": datasets.Value("string"),
                    },
                }
            ),
            reference_urls=["https://github.com/google-research/google-research/tree/master/encyclopedic_vqa"],
        )

    def _compute(self, predictions, references, bem_model=None):
        bem = None
        if bem_model:
            from eval.evqa import TransformersBEM

            bem = TransformersBEM(bem_model)
        rows = [_question(i, ref) for i, ref in enumerate(references)]
        return score_predictions(dict(enumerate(predictions)), rows, bem=bem).to_dict()
