"""The InfoSeek metric against the official algorithm (infoseek_eval.py), rule by rule, on real rows."""

import json

import pytest

from eval.infoseek import (
    clean_str_range,
    evaluate_predictions,
    evaluator_answer_eval,
    harmonic_mean,
    load_references,
    metric_numerical_range,
    normalize_answer,
    prepare_references,
    process_numerical_answer,
    range_intersection_over_union,
    score_answer,
    score_predictions,
    split_scores,
)

INFOSEEK = "infoseek"


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- normalize_answer: each rule on its own -------------------------------------------------


def test_normalize_lowercases():
    assert normalize_answer("PARIS") == "paris"


def test_normalize_deletes_ascii_punctuation_without_space():
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("rock-n-roll") == "rocknroll"
    assert normalize_answer("O'Brien") == "obrien"


def test_normalize_keeps_unicode_punctuation():
    assert normalize_answer("‘Rome’") == "‘rome’"


def test_normalize_removes_articles_on_word_boundaries_only():
    assert normalize_answer("The United States") == "united states"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theater") == "theater"


def test_normalize_punctuation_before_articles():
    # 'the-end' loses its hyphen first and becomes one word, so 'the' is no longer an article
    assert normalize_answer("the-end") == "theend"
    assert normalize_answer("the end") == "end"


def test_normalize_collapses_whitespace_and_has_no_digit_map():
    assert normalize_answer("  New \t York\n") == "new york"
    assert normalize_answer("two") == "two"  # unlike E-VQA, no digit mapping


# --- numeric parsing: golden quirks ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (".5", 5.0),  # leading '.' stripped
        ("1.2.3", [1.2, 3.0]),
        ("20 to 10", 20.0),  # a > b gives the scalar a
        ("3 - 4 - 5", [3.0, 4.0]),  # only the first two numbers
        ("about 1,234.5 m", 1234.5),
        ("1e3", 1000.0),
        ("9-10", [9.0, 10.0]),  # '-' after a digit is a range dash
        ("-5", -5.0),  # '-' not after a digit is a sign
        ("between 5 and 7", [5.0, 7.0]),
        ("1,000,000", 1000000.0),
        ("12,34", [12.0, 34.0]),  # ',' not followed by 3 digits splits numbers
        ("no idea", [0, 0]),
    ],
)
def test_process_numerical_answer(text, expected):
    result = process_numerical_answer(text)
    assert result == expected
    assert type(result) is type(expected)


def test_clean_str_range():
    assert clean_str_range("9-10") == "9 - 10"
    assert clean_str_range("-9") == "-9"
    assert clean_str_range("a-b") == "a-b"


# --- numeric range scoring ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        (12.6, [12.6, 15.4], 1),  # inclusive low end
        (15.4, [12.6, 15.4], 1),  # inclusive high end
        (15.41, [12.6, 15.4], 0),
        ([13.0, 14.0], [12.6, 15.4], 1),  # range inside
        ([4.0, 6.0], [4.5, 5.5], 1),  # IoU exactly 0.5: overlap 1 / union 2
        ([4.0, 7.0], [4.5, 5.5], 0),  # IoU 1/3
        ([10.0, 20.0], [12.0, 21.0], 1),  # IoU 8/11
        ([10.0, 20.0], [15.0, 25.0], 0),  # IoU 5/15
        ([1.0, 2.0], [3.0, 4.0], 0),  # disjoint
        ([5.0, 5.0], [5.0, 5.0], 1),  # point range inside
        ([0, 0], [-1.0, 1.0], 1),  # "no number" parses to [0, 0], inside a gold range around 0
        (10.5, 10.0, 1),  # scalar gold gets +-10%: [9, 11]
        (11.5, 10.0, 0),
    ],
)
def test_metric_numerical_range(pred, gold, expected):
    assert metric_numerical_range(pred, gold) == expected


def test_range_iou_values():
    assert range_intersection_over_union([4, 6], [4.5, 5.5]) == pytest.approx(0.5)
    assert range_intersection_over_union([10, 20], [15, 25]) == pytest.approx(1 / 3)
    assert range_intersection_over_union([1, 2], [3, 4]) == 0.0


# --- per-question scoring by type -----------------------------------------------------------


def test_score_answer_by_type():
    assert score_answer("the 1826.", ["1826", "1825", "1827"], "Time") == 1
    assert score_answer("1828", ["1826", "1825", "1827"], "time") == 0
    assert score_answer("about 14 days", ["12.6", "15.4"], "Numerical") == 1
    assert score_answer("16 days", ["12.6", "15.4"], "NUMERICAL") == 0
    assert score_answer("People's Republic of China", ["cn", "People's Republic of China"], "String") == 1
    assert score_answer("PRC.", ["PRC"], "some other type") == 1  # anything else is scored as String


def test_evaluator_answer_eval_converts_raw_numerical():
    assert evaluator_answer_eval([{"wikidata": 14.0, "range": [12.6, 15.4]}], "Numerical") == ["12.6", "15.4"]
    assert evaluator_answer_eval({"wikidata": 5, "range": [4, 6]}, "numerical") == ["4", "6"]
    assert evaluator_answer_eval(["6.5", "7.0"], "Numerical") == ["6.5", "7.0"]  # already converted
    assert evaluator_answer_eval(["India", "IN"], "String") == ["India", "IN"]
    with pytest.raises(ValueError):
        evaluator_answer_eval(["India"], "Numerical")
    with pytest.raises(ValueError):
        evaluator_answer_eval([{"wikidata": 1.0, "range": [0.9, 1.1]}], "String")
    with pytest.raises(ValueError):
        evaluator_answer_eval([], "Time")


# --- aggregation ----------------------------------------------------------------------------


def test_split_score_is_micro_average_and_rounded():
    scored = [("Time", 1), ("Numerical", 0), ("Numerical", 0), ("Numerical", 0)]
    scored += [("String", 1)] * 4
    result = split_scores(scored)
    assert result == {"score": 62.5, "score_time": 100.0, "score_num": 0.0, "score_string": 100.0}
    # not the mean of the three type scores (66.67)
    assert split_scores([("String", 1), ("String", 0), ("String", 0)])["score"] == 33.33
    assert split_scores([("String", 1), ("String", 1), ("String", 0)])["score"] == 66.67


def test_empty_split_scores_zero():
    assert split_scores([]) == {"score": 0, "score_time": 0, "score_num": 0, "score_string": 0}


def test_harmonic_mean_blip2_readme_check():
    # infoseek_eval README: BLIP-2 unseen question 8.89, unseen entity 7.38 -> final 8.06
    assert round(harmonic_mean(8.89, 7.38), 2) == 8.06


def test_harmonic_mean_with_a_zero_split():
    assert harmonic_mean(50.0, 0) == pytest.approx(2e-12)
    assert round(harmonic_mean(50.0, 0), 2) == 0.0


# --- whole evaluation on real rows ----------------------------------------------------------


def test_real_train_rows_with_their_first_answer_score_100(fixtures_dir):
    ref = fixtures_dir / INFOSEEK / "infoseek_train_sample300.jsonl"
    refs = load_references(ref, fixtures_dir / INFOSEEK / "infoseek_train_sample300_qtype.jsonl")
    preds = {row["data_id"]: row["answer"][0] for row in _rows(ref)}
    result = score_predictions(preds, refs)
    # data_split "train" does not end with unseen_question: everything is unseen_entity, officially
    assert result.to_dict() == {
        "final_score": 0.0,
        "unseen_question_score": {"score": 0, "score_time": 0, "score_num": 0, "score_string": 0},
        "unseen_entity_score": {"score": 100.0, "score_time": 100.0, "score_num": 100.0, "score_string": 100.0},
    }
    # numeric answers such as "4.75-5.5" parse as a range inside the gold range
    interval = next(e for e in result.examples if e.prediction == "4.75-5.5")
    assert interval.score == 1


def test_mixed_splits_hand_computed(fixtures_dir):
    """Val rows (unseen_question) + train rows relabelled unseen_entity, with known right/wrong answers."""
    val = _rows(fixtures_dir / INFOSEEK / "infoseek_val_sample300.qid2example.jsonl")
    train = _rows(fixtures_dir / INFOSEEK / "infoseek_train_sample300.jsonl")
    qtypes = {
        r["data_id"]: r["question_type"]
        for r in _rows(fixtures_dir / INFOSEEK / "infoseek_train_sample300_qtype.jsonl")
    }
    for row in train:
        row["data_split"] = "val_unseen_entity"
    refs = prepare_references(val + train, {**qtypes, **{r["data_id"]: r["question_type"] for r in val}})

    def right(row, qtype):
        if qtype == "Numerical":
            lo, hi = (float(x) for x in evaluator_answer_eval(row["answer_eval"], qtype))
            return f"{(lo + hi) / 2}"
        return row["answer_eval"][0]

    # Right answers: the first 10 questions of each type in val, the first 5 of each type in train.
    preds = {}
    for rows, quota, types in ((val, 10, {r["data_id"]: r["question_type"] for r in val}), (train, 5, qtypes)):
        seen = {"String": 0, "Numerical": 0, "Time": 0}
        for row in rows:
            qtype = types[row["data_id"]]
            ok = seen[qtype] < quota
            seen[qtype] += 1
            # no numerical gold range in these samples contains 0, so "zzz" (parsed as [0, 0]) is wrong
            preds[row["data_id"]] = right(row, qtype) if ok else "zzz"
    result = evaluate_predictions(preds, refs)
    # val: 155 String, 100 Numerical, 45 Time; train: 143 String, 100 Numerical, 57 Time
    uq = {
        "score": round(30 / 300 * 100, 2),
        "score_time": round(10 / 45 * 100, 2),
        "score_num": 10.0,
        "score_string": round(10 / 155 * 100, 2),
    }
    ue = {"score": 5.0, "score_time": round(5 / 57 * 100, 2), "score_num": 5.0, "score_string": round(5 / 143 * 100, 2)}
    assert result["unseen_question_score"] == uq
    assert result["unseen_entity_score"] == ue
    assert result["final_score"] == round(2 / (1 / uq["score"] + 1 / ue["score"]), 2) == 6.67


def test_unknown_ids_ignored_and_missing_not_counted(fixtures_dir):
    val = _rows(fixtures_dir / INFOSEEK / "infoseek_val_sample300.qid2example.jsonl")
    refs = prepare_references(val)
    preds = {val[0]["data_id"]: val[0]["answer_eval"][0], val[1]["data_id"]: "wrong", "infoseek_val_99999999": "x"}
    result = score_predictions(preds, refs)
    assert result.unknown_ids == ["infoseek_val_99999999"]
    assert len(result.missing_ids) == 298
    assert result.to_dict()["unseen_question_score"]["score"] == 50.0  # 1 of the 2 predicted, not 1 of 300


def test_duplicate_prediction_rows_are_an_error(fixtures_dir):
    refs = prepare_references(_rows(fixtures_dir / INFOSEEK / "infoseek_val_sample300.qid2example.jsonl"))
    rows = [
        {"data_id": "infoseek_val_00000000", "prediction": "a"},
        {"data_id": "infoseek_val_00000000", "prediction": "b"},
    ]
    with pytest.raises(ValueError, match="duplicate"):
        score_predictions(rows, refs)
