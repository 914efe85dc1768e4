"""The ``ret2vqa`` command line: help, demo --tiny, ask, eval (+ score), doctor, the offline message."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rag.cli import COMMAND_MODULES, build_parser, main

from conftest import demo_kb_config, write_tiny_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SUBCOMMANDS = ["demo", "ask", "index", "search", "serve", "eval", "score", "train", "doctor", "convert"]


def run_cli(*args, env=None, cwd=None):
    """``python -m rag.cli ...`` in a fresh process (what a user's shell runs)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=600)


def test_every_command_module_is_installed_and_listed():
    import importlib.util

    assert all(importlib.util.find_spec(m) is not None for m in COMMAND_MODULES)
    parser = build_parser()
    actions = next(a for a in parser._actions if a.dest == "command")
    assert sorted(actions.choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", [[]] + [[c] for c in SUBCOMMANDS])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "usage: ret2vqa" in text
    if not command:
        for name in SUBCOMMANDS:
            assert name in text
    else:
        assert len(text.splitlines()) > 5  # a description and the options


def test_demo_tiny_end_to_end(tmp_path):
    proc = run_cli("demo", "--tiny", "--store", str(tmp_path / "store"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "MEANINGLESS" in proc.stderr
    out = json.loads(proc.stdout)
    assert out["tiny"] is True and "MEANINGLESS" in out["note"]
    assert out["indexed"]["collection_count"] == 36 and out["indexed"]["malformed"] == 0
    assert len(out["answers"]) == 7
    for answer in out["answers"]:
        assert isinstance(answer["answer"], str) and answer["question"] and answer["reference"]
        assert len(answer["passages"]) == 3
        scores = [p["score"] for p in answer["passages"]]
        assert scores == sorted(scores, reverse=True)
        assert {"id", "title", "text", "url", "score"} <= set(answer["passages"][0])
        assert set(answer["timings_ms"]) == {"encode_ms", "search_ms", "generate_ms", "total_ms"}
        assert Path(answer["image"]).is_file()
    # a second run reuses the store: nothing to index again
    again = run_cli("demo", "--tiny", "--store", str(tmp_path / "store"), "--json", "--questions", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["indexed"]["passages_this_run"] == 0 and second["indexed"]["collection_count"] == 36


def test_demo_text_output(tmp_path):
    proc = run_cli("demo", "--tiny", "--store", str(tmp_path / "s"), "--questions", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.count("\nQ: ") == 2 and text.count("\nA: ") == 2 and "Sources (top 3" in text
    assert "Timings: encode" in text and "reference answer:" in text and "MEANINGLESS" in text


def test_demo_over_a_collection_from_other_tiny_models_says_how_to_start_afresh(tmp_path):
    """A demo store left by an earlier version (its tiny models differed: here another seed) is not
    overwritten: the error says to delete that directory or to pass another --store."""
    store = tmp_path / "store"
    other = write_tiny_config(tmp_path / "seed1.yaml", encoder={"revision": "seed1"})
    first = run_cli("demo", "--config", str(other), "--store", str(store), "--questions", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    proc = run_cli("demo", "--tiny", "--store", str(store), "--questions", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fingerprint mismatch" in proc.stderr and f"delete {store}" in proc.stderr and "--store" in proc.stderr


def test_offline_message_for_a_missing_model(tmp_path):
    path = write_tiny_config(tmp_path / "missing.yaml", generator={"model": "some-org/not-a-cached-model"})
    proc = run_cli("demo", "--config", str(path), "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "some-org/not-a-cached-model" in proc.stderr
    assert "hf download some-org/not-a-cached-model" in proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stderr and "--tiny" in proc.stderr
    # the same model through `ask` (the pipeline loader): one error line block, no traceback
    index_cfg = tmp_path / "tiny.yaml"
    config = yaml.safe_load(path.read_text())
    config["generator"]["model"] = "tiny-random/qwen2_vl"
    config["encoder"] = {"name_or_path": "/nonexistent/ret2-checkpoint"}
    index_cfg.write_text(yaml.safe_dump(config))
    proc = run_cli("ask", "--config", str(index_cfg), "-q", "What is this?", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: model '/nonexistent/ret2-checkpoint' is not available")


@pytest.fixture(scope="module")
def tiny_store_config(tmp_path_factory):
    """configs/tiny.yaml pointed at a fresh store that holds the demo KB."""
    return demo_kb_config(tmp_path_factory.mktemp("cli-store"))


def test_ask_text_and_json(tiny_store_config, capsys):
    from rag.demo import DEMO_DIR

    image = str(DEMO_DIR / "images" / "coffee.jpg")
    capsys.readouterr()
    assert main(["ask", "--config", str(tiny_store_config), "--image", image, "-q", "Where is it from?"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Q: Where is it from?") and "\nA: " in text and "Sources (top 3 of 3" in text
    assert main(["ask", "--config", str(tiny_store_config), "--image", image, "-q", "Where is it from?", "--json",
                 "-k", "2", "--show-prompt"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["passages"]) == 2 and data["passages_used"] <= 2 and "Where is it from?" in data["prompt"]
    assert main(["ask", "--config", str(tiny_store_config), "-q", "Zero-shot?", "-k", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"] == []


def _oven_images(directory: Path, rows: list[dict]) -> None:
    """Generated stand-ins for OVEN images (the real ones may not be redistributed), sharded layout."""
    rng = np.random.default_rng(0)
    for row in rows:
        image_id = row["image_id"]
        shard = directory / image_id[-8:-6]
        shard.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(shard / f"{image_id}.jpg")


def test_eval_infoseek_writes_predictions_that_score_accepts(tiny_store_config, tmp_path, capsys):
    src = FIXTURES / "infoseek"
    rows = [json.loads(line) for line in (src / "infoseek_train_sample300.jsonl").read_text().splitlines()][:12]
    questions = tmp_path / "infoseek_train.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for suffix in ("_qtype", "_withkb"):
        ids = {r["data_id"] for r in rows}
        side = [line for line in (src / f"infoseek_train_sample300{suffix}.jsonl").read_text().splitlines()
                if json.loads(line)["data_id"] in ids]
        (tmp_path / f"infoseek_train{suffix}.jsonl").write_text("\n".join(side) + "\n")
    _oven_images(tmp_path / "oven_images", rows)
    out = tmp_path / "run"
    args = ["eval", "infoseek", "--config", str(tiny_store_config), "--questions", str(questions),
            "--images", str(tmp_path / "oven_images"), "--out", str(out), "--limit", "10", "--batch-size", "4",
            "--no-progress"]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_questions"] == 10 and metrics["n_answered_this_run"] == 10
    assert set(metrics["retrieval"]) == {"entity_recall", "pseudo_recall"}
    assert set(metrics["retrieval"]["entity_recall"]) == {"1", "5", "10", "20"}
    assert set(metrics["answer"]) == {"final_score", "unseen_question_score", "unseen_entity_score"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["data_id"] for p in predictions] == [r["data_id"] for r in rows[:10]]
    assert all(set(p) == {"data_id", "prediction"} for p in predictions)
    rankings = [json.loads(line) for line in (out / "retrieval.jsonl").read_text().splitlines()]
    assert len(rankings) == 10 and all(len(r["retrieved"]) == 20 for r in rankings)
    assert (out / "report.md").read_text().startswith("# infoseek: 10 questions")
    assert (out / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"

    # the official-format scorer accepts the predictions and gives the same numbers
    assert main(["score", "infoseek", "--pred", str(out / "predictions.jsonl"), "--ref", str(questions),
                 "--qtype", str(tmp_path / "infoseek_train_qtype.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == metrics["answer"]

    # resumable: a rerun answers nothing again, a larger --limit answers only the new questions
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["n_answered_this_run"] == 0
    assert main([*args[:-5], "--limit", "12", "--batch-size", "4", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["n_answered_this_run"] == 2
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 12
    # resuming with other settings would mix predictions: refused with a clear message
    assert main([*args, "-k", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds predictions made with other settings (k: 3 -> 1)" in err and "another --out" in err


def test_eval_missing_image_is_a_clear_error(tiny_store_config, tmp_path, capsys):
    row = json.loads((FIXTURES / "infoseek" / "infoseek_train_sample300.jsonl").read_text().splitlines()[0])
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps(row) + "\n")
    (tmp_path / "imgs").mkdir()
    args = ["eval", "infoseek", "--config", str(tiny_store_config), "--questions", str(questions),
            "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{questions}:1" in err and row["image_id"] in err and "--missing-images text_only" in err
    assert main([*args, "--missing-images", "text_only"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["missing_images"] == 1 and any("accuracy not computed" in n for n in metrics["notes"])


def test_eval_evqa(tiny_store_config, tmp_path, capsys):
    from eval.evqa import load_questions

    csv = FIXTURES / "evqa" / "evqa_test_sample.csv"
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for q in load_questions(csv):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"{q.image_ids[0]}.jpg")
    out = tmp_path / "run"
    assert main(["eval", "evqa", "--config", str(tiny_store_config), "--questions", str(csv), "--images",
                 str(images), "--out", str(out), "--no-progress", "--ks", "1,5"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    n = len(load_questions(csv))
    assert metrics["answer"]["n"] == n and metrics["answer"]["metric"] == "exact_match"
    assert set(metrics["retrieval"]["article_recall"]) == {"1", "5"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["question_id"] for p in predictions] == list(range(n))
    assert main(["score", "evqa", "--pred", str(out / "predictions.jsonl"), "--ref", str(csv)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["accuracy"] == metrics["answer"]["accuracy"]


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["versions"]["torch"] and data["versions"]["transformers"]
    assert data["devices"]["cuda"] in (True, False) and "bitsandbytes" in data["devices"]
    assert data["cache"]["hf_hub_cache"]
    tiny = next(v for k, v in data["models"].items() if "tiny" in k)
    assert [m["available"] for m in tiny] == [True, True]
    cpu = next(v for k, v in data["models"].items() if "cpu" in k)
    assert {m["role"] for m in cpu} == {"encoder", "generator"}
    released = {c["name_or_path"]: c for c in data["released_checkpoints"]}
    assert set(released) == {"aimagelab/ReT-CLIP-ViT-L-14", "aimagelab/ReT-OpenCLIP-ViT-H-14",
                             "aimagelab/ReT-OpenCLIP-ViT-G-14"}
    assert all((Path(__file__).resolve().parent.parent / c["config"]).is_file() for c in released.values())


def test_readme_commands_and_ci_agree():
    """The README's first lines give the two fresh-machine commands; `.ci/run` runs the test one."""
    root = Path(__file__).resolve().parent.parent
    lines = (root / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].endswith("ret2vqa demo") and block[1].endswith("python -m pytest -q")
    assert block[1] in (root / ".ci" / "run").read_text().splitlines()
    assert lines.index("```bash") < 4


def test_unreachable_hub_fails_fast_with_one_message(tmp_path):
    """Online mode, but the hub cannot be reached: no minute of retries, one message."""
    path = write_tiny_config(tmp_path / "missing.yaml", generator={"model": "some-org/not-a-cached-model"})
    env = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf")}
    proc = run_cli("demo", "--config", str(path), "--store", str(tmp_path / "s"), env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    assert "the hub (http://127.0.0.1:9) cannot be reached" in proc.stderr
    assert "hf download some-org/not-a-cached-model" in proc.stderr
