"""`ret2vqa score` end to end, through the real dispatcher in rag/cli/__init__.py."""

import json
import subprocess
import sys

import pytest

import rag.cli

from test_eval_bem import build_tiny_bem  # tests/ is on sys.path (pytest's rootdir conftest)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `ret2vqa ...` in-process with only this package's command registered."""
    monkeypatch.setattr(rag.cli, "COMMAND_MODULES", ["eval.cli"])

    def run(*argv):
        code = rag.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- InfoSeek --------------------------------------------------------------------------------


@pytest.fixture
def infoseek_files(fixtures_dir, tmp_path):
    """REF: 300 real val rows (unseen_question, evaluator form) + 300 real train rows in the raw
    official schema relabelled val_unseen_entity; QTYPE: both qtype files."""
    src = fixtures_dir / "infoseek"
    val = read_jsonl(src / "infoseek_val_sample300.qid2example.jsonl")
    train = read_jsonl(src / "infoseek_train_sample300.jsonl")
    for row in train:
        row["data_split"] = "val_unseen_entity"
    ref = write_jsonl(tmp_path / "ref.jsonl", val + train)
    qtype = write_jsonl(
        tmp_path / "qtype.jsonl",
        read_jsonl(src / "infoseek_val_sample300_qtype.jsonl")
        + read_jsonl(src / "infoseek_train_sample300_qtype.jsonl"),
    )
    return val, train, ref, qtype


def test_score_infoseek_end_to_end(cli, infoseek_files, tmp_path):
    val, train, ref, qtype = infoseek_files
    # unseen_question: predict the first 100 val rows, right for ids 0..39 (by answer[0]), wrong after
    # unseen_entity: predict the first 60 train rows, right for the first 15
    preds = [
        {"data_id": r["data_id"], "prediction": r["answer"][0] if i < 40 else "zzz"} for i, r in enumerate(val[:100])
    ]
    preds += [
        {"data_id": r["data_id"], "prediction": r["answer"][0] if i < 15 else "zzz"} for i, r in enumerate(train[:60])
    ]
    preds += [{"data_id": "infoseek_test_00000001", "prediction": "x"}, {"data_id": "not_an_id", "prediction": "y"}]
    pred = write_jsonl(tmp_path / "pred.jsonl", preds)
    per_example = tmp_path / "out" / "per_example.jsonl"
    code, out, err = cli(
        "score", "infoseek", "--pred", pred, "--ref", ref, "--qtype", qtype, "--per-example", per_example
    )
    assert code == 0, err
    result = json.loads(out)
    assert list(result) == ["final_score", "unseen_question_score", "unseen_entity_score"]
    assert list(result["unseen_question_score"]) == ["score", "score_time", "score_num", "score_string"]
    assert result["unseen_question_score"]["score"] == 40.0  # 40 / 100 predicted, not / 300
    assert result["unseen_entity_score"]["score"] == 25.0  # 15 / 60
    assert result["final_score"] == round(2 / (1 / 40 + 1 / 25), 2) == 30.77
    assert "2 prediction(s) have a data_id that is not in" in err and "were ignored" in err
    assert "440 of 600 reference question(s) have no prediction and are not counted" in err
    rows = read_jsonl(per_example)
    assert len(rows) == 160 and rows[0]["split"] == "unseen_question" and rows[-1]["split"] == "unseen_entity"
    assert sum(r["score"] for r in rows) == 55


def test_score_infoseek_per_type_scores(cli, infoseek_files, tmp_path):
    val, _, ref, qtype = infoseek_files
    types = {r["data_id"]: r["question_type"] for r in val}
    # right on every Time question, wrong on everything else
    preds = [
        {"data_id": r["data_id"], "prediction": r["answer"][0] if types[r["data_id"]] == "Time" else "zzz"} for r in val
    ]
    code, out, err = cli(
        "score", "infoseek", "--pred", write_jsonl(tmp_path / "p.jsonl", preds), "--ref", ref, "--qtype", qtype
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["unseen_question_score"] == {
        "score": 15.0,
        "score_time": 100.0,
        "score_num": 0.0,
        "score_string": 0.0,
    }
    assert result["unseen_entity_score"] == {"score": 0, "score_time": 0, "score_num": 0, "score_string": 0}
    assert result["final_score"] == 0.0  # harmonic mean with a zero split (replaced by 1e-12)


def test_score_infoseek_bad_inputs(cli, infoseek_files, tmp_path):
    _, _, ref, qtype = infoseek_files
    code, out, err = cli("score", "infoseek", "--pred", tmp_path / "missing.jsonl", "--ref", ref, "--qtype", qtype)
    assert code == 2 and out == "" and err.startswith("error: file not found") and "missing.jsonl" in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"data_id": "infoseek_val_00000000", "prediction": "a"}\n{"data_id": 3}\n', encoding="utf-8")
    code, out, err = cli("score", "infoseek", "--pred", bad, "--ref", ref, "--qtype", qtype)
    assert code == 2 and err.strip() == f"error: {bad}:2: missing field 'prediction'"
    code, out, err = cli("score", "infoseek", "--pred", bad, "--ref", ref, "--qtype", qtype, "--skip-malformed")
    assert code == 0 and "1 malformed row(s) skipped" in err and f"{bad}:2" in err

    dup = write_jsonl(tmp_path / "dup.jsonl", [{"data_id": "infoseek_val_00000000", "prediction": p} for p in "ab"])
    code, out, err = cli("score", "infoseek", "--pred", dup, "--ref", ref, "--qtype", qtype)
    assert code == 2 and "dup.jsonl:2: duplicate data_id 'infoseek_val_00000000' (first at line 1)" in err

    number = write_jsonl(tmp_path / "num.jsonl", [{"data_id": "infoseek_val_00000000", "prediction": 1826}])
    code, out, err = cli("score", "infoseek", "--pred", number, "--ref", ref, "--qtype", qtype)
    assert code == 2 and "'prediction' must be a string" in err


def test_score_infoseek_help_documents_the_id_policy(monkeypatch, capsys):
    monkeypatch.setattr(rag.cli, "COMMAND_MODULES", ["eval.cli"])
    with pytest.raises(SystemExit) as info:
        rag.cli.main(["score", "infoseek", "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0
    assert "is ignored" in text and "not counted" in text and "--qtype" in text


# --- E-VQA -----------------------------------------------------------------------------------


@pytest.fixture
def evqa_files(fixtures_dir):
    return fixtures_dir / "evqa" / "evqa_test_sample.csv", fixtures_dir / "evqa" / "evqa_test_sample_predictions.jsonl"


def test_score_evqa_end_to_end_exact_match(cli, evqa_files, tmp_path):
    ref, pred = evqa_files
    out_json, md = tmp_path / "r.json", tmp_path / "r.md"
    code, out, err = cli(
        "score",
        "evqa",
        "--pred",
        pred,
        "--ref",
        ref,
        "--per-example",
        tmp_path / "ex.jsonl",
        "--output",
        out_json,
        "--markdown",
        md,
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["accuracy"], result["metric"], result["n"]) == (66.67, "exact_match", 9)
    assert result["by_question_type"]["templated"] == {"accuracy": 100.0, "n": 3, "correct": 3}
    assert result["by_question_type"]["2_hop"] == {"accuracy": 50.0, "n": 2, "correct": 1}
    assert result["single_hop"]["accuracy"] == 71.43
    assert "exact match only" in err and json.loads(out_json.read_text()) == result
    assert "| evqa | exact_match | 66.67 | 71.43 | 50.00 |" in md.read_text()
    rows = read_jsonl(tmp_path / "ex.jsonl")
    assert [r["score"] for r in rows] == [1, 0, 1, 0, 1, 1, 0, 1, 1]
    assert rows[2] | {"bem_score": None} == {
        "question_id": 2,
        "question_type": "multi_answer",
        "prediction": "Pink and white",
        "score": 1.0,
        "exact_match": True,
        "bem_score": None,
        "missing": False,
        "reference": "white&&pink&&purple|white&&pink",
    }


def test_score_evqa_missing_and_unknown_ids(cli, evqa_files, tmp_path):
    ref, _ = evqa_files
    pred = write_jsonl(
        tmp_path / "p.jsonl", [{"question_id": 8, "prediction": "USA"}, {"question_id": "4", "prediction": "1"}]
    )
    code, out, err = cli("score", "evqa", "--pred", pred, "--ref", ref)
    assert code == 0 and json.loads(out)["accuracy"] == round(200 / 9, 2)
    assert "7 of 9 reference question(s) have no prediction: scored 0 (--missing zero)" in err
    code, out, err = cli("score", "evqa", "--pred", pred, "--ref", ref, "--missing", "ignore")
    assert (json.loads(out)["accuracy"], json.loads(out)["n"]) == (100.0, 2)
    code, out, err = cli("score", "evqa", "--pred", pred, "--ref", ref, "--missing", "error")
    assert code == 2 and "error: 7 reference question(s) have no prediction" in err

    extra = write_jsonl(tmp_path / "x.jsonl", [{"question_id": 9, "prediction": "a"}])
    code, out, err = cli("score", "evqa", "--pred", extra, "--ref", ref)
    assert (
        code == 2
        and "error: 1 prediction(s) have a question_id that is not a row of the reference (valid: 0..8): 9" in err
    )

    bad_id = write_jsonl(tmp_path / "b.jsonl", [{"question_id": "q7", "prediction": "a"}])
    code, out, err = cli("score", "evqa", "--pred", bad_id, "--ref", ref)
    assert code == 2 and "b.jsonl:1: 'question_id': expected a 0-based row index" in err


def test_score_evqa_bad_reference(cli, tmp_path, evqa_files):
    ref, pred = evqa_files
    lines = ref.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",automatic,", ",list,")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = cli("score", "evqa", "--pred", pred, "--ref", bad)
    assert code == 2 and err.startswith(f"error: {bad}:3: question_type 'list' is not one of")


def test_score_evqa_with_bem(cli, evqa_files, tmp_path):
    ref, pred = evqa_files
    model = build_tiny_bem(tmp_path / "bem")
    code, out, err = cli(
        "score",
        "evqa",
        "--pred",
        pred,
        "--ref",
        ref,
        "--bem",
        model,
        "--device",
        "cpu",
        "--per-example",
        tmp_path / "e.jsonl",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["metric"] == "bem" and "note" not in result and result["bem_model"] == model
    assert result["bem_segment_ids"] == "0/1/2"
    rows = read_jsonl(tmp_path / "e.jsonl")
    bem_rows = [r for r in rows if r["bem_score"] is not None]
    assert [r["question_id"] for r in bem_rows] == [1, 3, 6]  # only where exact match failed
    assert all(r["score"] == float(r["bem_score"] >= 0.5) for r in bem_rows)
    assert result["correct"] == 6 + sum(r["score"] for r in bem_rows)


def test_score_evqa_unavailable_bem_model(cli, evqa_files, monkeypatch):
    ref, pred = evqa_files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = cli("score", "evqa", "--pred", pred, "--ref", ref, "--bem", "no-such-org/bem")
    assert code == 2 and out == ""
    assert err.startswith("error: model 'no-such-org/bem' is not available") and "offline mode is on" in err


def test_score_evqa_help_documents_policies(monkeypatch, capsys):
    monkeypatch.setattr(rag.cli, "COMMAND_MODULES", ["eval.cli"])
    with pytest.raises(SystemExit):
        rag.cli.main(["score", "evqa", "--help"])
    text = capsys.readouterr().out
    assert "--missing" in text and "scored 0 by default" in text and "NOT the official number" in text


def test_importing_the_command_is_light():
    code = "import eval.cli, sys; heavy = {'torch', 'transformers', 'datasets', 'evaluate'} & set(sys.modules); print(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
