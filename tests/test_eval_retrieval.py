"""Retrieval recall@k conventions, the markdown report, and the offline `evaluate` modules."""

import pytest

from eval.report import markdown_report
from eval.retrieval import (
    dedup_first,
    evqa_article_positives,
    first_hit_ranks,
    passage_recall_at_k,
    pseudo_recall_at_k,
    recall_at_k,
)


def test_article_recall_deduplicates_keeping_first_occurrence():
    # passages mapped to their articles: a, a, a, b, c, ...
    retrieved = [["a", "a", "a", "b", "c"], ["x", "y", "x", "z"], ["p"]]
    positives = [["b"], ["z"], ["q"]]
    assert dedup_first(["a", "a", "b", "a", "c"]) == ["a", "b", "c"]
    assert first_hit_ranks(retrieved, positives) == [2, 3, None]
    assert recall_at_k(retrieved, positives, ks=[1, 2, 3, 10]) == {1: 0.0, 2: 1 / 3, 3: 2 / 3, 10: 2 / 3}


def test_passage_recall_does_not_deduplicate():
    retrieved = [["a", "a", "a", "b"]]
    assert passage_recall_at_k(retrieved, [["b"]], ks=[2, 4]) == {2: 0.0, 4: 1.0}
    assert recall_at_k(retrieved, [["b"]], ks=[2]) == {2: 1.0}


def test_any_positive_counts_and_a_string_is_one_positive():
    assert recall_at_k([["u2", "u1"]], [["u1", "u9"]], ks=[1, 2]) == {1: 0.0, 2: 1.0}
    assert recall_at_k([["Q178185"]], ["Q178185"], ks=[1]) == {1: 1.0}


def test_pseudo_recall_m2kr_convention():
    passages = [["The hotel was built by the Menger family.", "Other text"], ["Nothing here", "Founded in 1859"]]
    answers = [["  menger FAMILY "], ["1860", "1859"]]
    assert pseudo_recall_at_k(passages, answers, ks=[1, 2]) == {1: 0.5, 2: 1.0}


def test_empty_positives_or_answers_raise_unless_counted_as_misses():
    with pytest.raises(ValueError, match="query 1 has no positive ids"):
        recall_at_k([["a"], ["b"]], [["a"], []])
    assert recall_at_k([["a"], ["b"]], [["a"], []], ks=[1], on_empty="miss") == {1: 0.5}
    with pytest.raises(ValueError, match="no non-empty answer"):
        pseudo_recall_at_k([["text"]], [["  "]])


def test_bad_arguments():
    with pytest.raises(ValueError, match="ks must be positive"):
        recall_at_k([["a"]], [["a"]], ks=[0])
    with pytest.raises(ValueError, match="one each per query"):
        recall_at_k([["a"]], [["a"], ["b"]])


def test_evqa_article_positive_is_the_pictured_entity(fixtures_dir):
    from eval.evqa import load_questions

    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    assert evqa_article_positives(rows[3]) == ["https://en.wikipedia.org/wiki/Eiffel_Tower"]  # 2_hop: url1
    assert evqa_article_positives(rows[0]) == ["https://en.wikipedia.org/wiki/Polar_bear"]


def test_markdown_report_renders_each_kind():
    infoseek = {
        "final_score": 8.06,
        "unseen_question_score": {"score": 8.89, "score_time": 1.0, "score_num": 2.0, "score_string": 3.0},
        "unseen_entity_score": {"score": 7.38, "score_time": 4.0, "score_num": 5.0, "score_string": 6.0},
    }
    evqa = {
        "accuracy": 66.67,
        "metric": "exact_match",
        "n": 9,
        "by_question_type": {"templated": {"accuracy": 100.0, "n": 3}},
        "single_hop": {"accuracy": 71.43, "n": 7},
        "two_hop": {"accuracy": 50.0, "n": 2},
    }
    text = markdown_report({"blip2": infoseek, "ours": evqa, "article": {1: 0.25, 5: 0.5}})
    assert "| blip2 | 8.06 | 8.89 | 7.38 | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 |" in text
    assert "| ours | exact_match | 66.67 | 71.43 | 50.00 | 100.00 |  |  |  | 9 |" in text
    assert "a lower bound" in text
    assert "| article | 25.00 | 50.00 |" in text
    with pytest.raises(ValueError, match="unrecognised result shape"):
        markdown_report({"x": {"foo": 1}})


# --- evaluate modules, loaded offline from their local folders -------------------------------


@pytest.fixture(scope="module")
def load_metric(tmp_path_factory):
    import os

    import evaluate

    from eval.metrics import metric_path

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    cache = tmp_path_factory.mktemp("evaluate_cache")

    def load(name):
        return evaluate.load(metric_path(name), cache_dir=str(cache))

    return load


def test_infoseek_evaluate_module_matches_the_library(load_metric, fixtures_dir):
    import json

    from eval.infoseek import evaluate_predictions

    rows = [json.loads(line) for line in open(fixtures_dir / "infoseek" / "infoseek_val_sample300.qid2example.jsonl")]
    rows = rows[:40]
    for row in rows[20:]:
        row["data_split"] = "val_unseen_entity"
    predictions = [r["answer"][0] if i % 3 else "wrong" for i, r in enumerate(rows)]
    metric = load_metric("infoseek_accuracy")
    result = metric.compute(
        predictions=predictions,
        references=[{k: r[k] for k in ("answer_eval", "question_type", "data_split")} for r in rows],
    )
    expected = evaluate_predictions({r["data_id"]: p for r, p in zip(rows, predictions)}, rows)
    assert result == expected
    assert 0 < result["unseen_question_score"]["score"] < 100


def test_evqa_evaluate_module_matches_the_library(load_metric, fixtures_dir):
    from eval.evqa import load_questions, score_predictions
    from eval.predictions import parse_row_index, read_predictions

    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    preds = read_predictions(
        fixtures_dir / "evqa" / "evqa_test_sample_predictions.jsonl", "question_id", parse_id=parse_row_index
    )
    metric = load_metric("evqa_accuracy")
    result = metric.compute(
        predictions=[preds[q.question_id] for q in rows],
        references=[{"answer": q.answer, "question": q.question, "question_type": q.question_type} for q in rows],
    )
    assert result == score_predictions(preds, rows).to_dict()
    assert (result["accuracy"], result["metric"]) == (66.67, "exact_match")


def test_retrieval_evaluate_module(load_metric):
    metric = load_metric("retrieval_recall")
    assert metric.compute(predictions=[["a", "a", "b"], ["c"]], references=[["b"], ["d"]], ks=[1, 2]) == {
        "recall@1": 0.0,
        "recall@2": 0.5,
    }
    assert metric.compute(predictions=[["a", "a", "b"]], references=[["b"]], ks=[2], level="passage") == {
        "recall@2": 0.0
    }
    assert metric.compute(predictions=[["Paris is big"]], references=[["paris"]], ks=[1], level="pseudo") == {
        "recall@1": 1.0
    }
