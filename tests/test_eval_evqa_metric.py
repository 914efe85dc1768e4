"""The E-VQA exact-match metric against the official algorithm (evaluation_utils.py), rule by rule."""

import pytest

from eval.evqa import (
    CONTRACTIONS,
    DIGIT_MAP,
    evaluate_example,
    exact_match,
    list_iou,
    load_questions,
    multianswer_exact_match,
    preprocess_answer,
    reference_problem,
    score_predictions,
    singleanswer_exact_match,
)

# --- preprocess_answer, step by step --------------------------------------------------------


def test_step1_lowercase_tabs_newlines_strip():
    assert preprocess_answer("  Hello\tWorld\nAgain ") == "hello world again"


def test_step2_llm_span_prefix_removed_everywhere_only_when_leading():
    assert preprocess_answer("<extra_id_0> Paris") == "paris"
    # every occurrence goes once the string starts with it ('a' then falls to the article rule)
    assert preprocess_answer("<extra_id_0> a <extra_id_0> b") == "b"
    # not leading: kept, then its punctuation (< _ >) is deleted
    assert preprocess_answer("Paris <extra_id_0> x") == "paris extraid0 x"


def test_step3_punctuation_deleted_not_replaced():
    assert preprocess_answer("U.S.A.") == "usa"
    assert preprocess_answer("rock-n-roll") == "rocknroll"
    assert preprocess_answer("‘Rome’ ´x` snake_case") == "rome x snakecase"


def test_step4_articles_and_the_answer_is():
    assert preprocess_answer("The United States") == "united states"
    assert preprocess_answer("The answer is: an apple") == "apple"
    assert preprocess_answer("theater") == "theater"
    assert preprocess_answer("the-end") == "theend"  # punctuation goes first, so no article is left


def test_step5_digit_map_then_contractions():
    assert preprocess_answer("Two") == "2"
    assert preprocess_answer("none") == preprocess_answer("zero") == "0"  # not injective
    assert preprocess_answer("True") == preprocess_answer("entailment") == "yes"
    assert preprocess_answer("false") == preprocess_answer("contradiction") == "no"
    assert preprocess_answer("eleven") == "eleven"
    assert preprocess_answer("Don't") == "don't"  # apostrophe deleted, then restored by the table
    assert preprocess_answer("I'm") == "im"  # the key 'Im' is upper-case: it can never fire


def test_step6_whitespace_collapsed():
    assert preprocess_answer("new   york ,  city") == "new york city"


def test_only_73_contractions_can_fire():
    assert len(DIGIT_MAP) == 16
    assert len(CONTRACTIONS) == 120
    live = {k for k in CONTRACTIONS if k == k.lower() and "'" not in k}
    assert len(live) == 73
    for key in live:
        assert preprocess_answer(key) == CONTRACTIONS[key]
    for key in set(CONTRACTIONS) - live:  # upper-case or apostrophe keys: lower-cased and stripped, never looked up
        assert preprocess_answer(key) == key.lower().replace("'", "")


# --- exact match ----------------------------------------------------------------------------


def test_single_answer_exact_match():
    assert singleanswer_exact_match("The Eiffel Tower", "eiffel tower!")
    assert singleanswer_exact_match("two", "2")
    assert not singleanswer_exact_match("the Menger family", "William and Mary Menger")


@pytest.mark.parametrize("reference", ["The", "A", "...", "the answer is"])
def test_reference_empty_after_preprocessing_raises(reference):
    with pytest.raises(ValueError, match="empty after preprocessing"):
        singleanswer_exact_match(reference, "anything")


@pytest.mark.parametrize(
    "candidate, expected",
    [
        ("White, pink and purple", True),  # IoU 3/3
        ("white and pink", True),  # 2/3
        ("white & pink", True),  # ' & ' splits too
        ("pink, pink, white", True),  # a set: duplicates count once
        ("white, pink, red", True),  # 2/4 = 0.5, the boundary counts
        ("white, pink, red, blue", False),  # 2/5
        ("white", False),  # 1/3
        ("white AND pink", False),  # the split is case-sensitive: one item 'white and pink'
        ("white&pink", False),  # no spaces: not split, '&' deleted -> 'whitepink'
    ],
)
def test_multi_answer_iou(candidate, expected):
    assert multianswer_exact_match("white&&pink&&purple", candidate) is expected


def test_multi_answer_reference_items_are_preprocessed_and_empties_dropped():
    assert multianswer_exact_match("The Netherlands&&the&&Belgium", "netherlands, belgium")
    with pytest.raises(ValueError, match="empty after preprocessing"):
        multianswer_exact_match("the&&a", "x")


def test_list_iou():
    assert list_iou(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        list_iou([], ["a"])


def test_exact_match_dispatch_and_validation():
    assert exact_match("white&&pink", "pink and white", "multi_answer")
    # the same text as a single answer must match as a whole string
    assert not exact_match("white&&pink", "pink and white", "automatic")
    assert exact_match("Dijon", "dijon", "2_hop")
    with pytest.raises(ValueError, match="unknown question type"):
        exact_match("a b", "a b", "list")
    with pytest.raises(ValueError, match="cannot be empty"):
        exact_match("", "x", "templated")


def test_evaluate_example_max_over_references_em_only():
    assert evaluate_example("q", ["25 years", "up to 25 years"], "Up to 25 years.", "templated") == 1.0
    # README example: EM fails (BEM would accept; see test_eval_bem for the BEM path)
    assert (
        evaluate_example(
            "Where does this hotel derive its name from?", ["the Menger family"], "William and Mary Menger", "automatic"
        )
        == 0.0
    )
    with pytest.raises(ValueError, match="reference list cannot be empty"):
        evaluate_example("q", [], "x", "templated")


def test_reference_problem_names_the_reference():
    assert reference_problem("25 years|up to 25 years", "templated") is None
    assert "reference 2" in reference_problem("Rome|The", "automatic")
    assert "reference 2" in reference_problem("Rome|", "automatic")
    assert "no item left" in reference_problem("white&&pink|the&&an", "multi_answer")
    assert "unknown question type" in reference_problem("x", "infoseek")


# --- scoring the hand-written fixture -------------------------------------------------------

# evqa_test_sample_predictions.jsonl, scored by hand with the official rules (ids are CSV row indices):
#   0 "Up to 25 years."          templated     matches annotator 2                         -> 1
#   1 "William and Mary Menger"  automatic     EM fails                                    -> 0
#   2 "Pink and white"           multi_answer  {pink, white} vs {white, pink, purple}: 2/3 -> 1
#   3 "Paris"                    2_hop                                                     -> 0
#   4 "One."                     templated     'one' -> '1' matches annotator 2            -> 1
#   5 "rome"                     automatic     matches annotator 2                         -> 1
#   6 "Spain"                    multi_answer  IoU 1/4                                     -> 0
#   7 "Denmark"                  2_hop         matches annotator 2                         -> 1
#   8 "USA"                      templated     'U.S.A.' -> 'usa'                           -> 1
EXPECTED_SCORES = [1, 0, 1, 0, 1, 1, 0, 1, 1]


def fixture_predictions(fixtures_dir):
    from eval.predictions import parse_row_index, read_predictions

    return read_predictions(
        fixtures_dir / "evqa" / "evqa_test_sample_predictions.jsonl", "question_id", parse_id=parse_row_index
    )


@pytest.fixture
def predictions(fixtures_dir):
    return fixture_predictions(fixtures_dir)


def test_fixture_scores_by_hand(fixtures_dir, predictions):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    result = score_predictions(predictions, rows)
    assert [e.score for e in result.examples] == EXPECTED_SCORES
    summary = result.to_dict()
    assert summary["metric"] == "exact_match"
    assert "not the official number" in summary["note"]
    assert (summary["accuracy"], summary["n"], summary["correct"]) == (66.67, 9, 6)
    assert summary["by_question_type"] == {
        "templated": {"accuracy": 100.0, "n": 3, "correct": 3},
        "automatic": {"accuracy": 50.0, "n": 2, "correct": 1},
        "multi_answer": {"accuracy": 50.0, "n": 2, "correct": 1},
        "2_hop": {"accuracy": 50.0, "n": 2, "correct": 1},
    }
    assert summary["single_hop"] == {"accuracy": 71.43, "n": 7, "correct": 5}
    assert summary["two_hop"] == {"accuracy": 50.0, "n": 2, "correct": 1}


def test_missing_policies(fixtures_dir, predictions):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    preds = {k: v for k, v in predictions.items() if k != 8}
    zero = score_predictions(preds, rows).to_dict()
    assert (zero["accuracy"], zero["n"], zero["n_missing"]) == (55.56, 9, 1)
    ignore = score_predictions(preds, rows, missing="ignore").to_dict()
    assert (ignore["accuracy"], ignore["n"], ignore["n_missing"]) == (62.5, 8, 1)
    with pytest.raises(ValueError, match="no prediction"):
        score_predictions(preds, rows, missing="error")


def test_unknown_prediction_id_is_an_error(fixtures_dir, predictions):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    with pytest.raises(ValueError, match="not a row of the reference"):
        score_predictions({**predictions, 9: "x"}, rows)


def test_prediction_for_a_skipped_reference_row_is_counted(fixtures_dir, predictions):
    rows = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")
    rows[4] = None  # as load_questions leaves a malformed record in lenient mode
    result = score_predictions(predictions, rows).to_dict()
    assert result["n_skipped_reference"] == 1
    assert (result["n"], result["correct"]) == (8, 5)
