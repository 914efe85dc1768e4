"""Broken and hostile input: every command ends with the right result or one ``error:`` line (exit 2).

One test (or a few) per item of issue 15, on tiny models and small generated files: a
120K-character question, a PNG that claims 20000x20000 pixels, a truncated JPEG, a jsonl
with a byte-order mark and one with invalid UTF-8, a collection with a segment removed or
a file cut short, wrong flags. Each checks the exit status, that the message names the
file, line or field, that no traceback leaks, and that nothing is lost (counts).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rag.cli import main

from conftest import demo_kb_config, write_tiny_config

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
LONG_QUESTION = "Which year was this tower completed and who designed it? " * 2110  # 120,270 characters


def cli(capsys, *args):
    """``ret2vqa ARGS`` in-process: (exit status, stdout, stderr); a leaked exception fails the test."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse refuses a flag
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG header claiming ``width`` x ``height`` pixels, with a tiny (wrong-sized) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def truncated_jpeg(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_jsonl(path: Path, rows, prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """configs/tiny.yaml with its store in a temporary directory, holding the demo KB (36 passages)."""
    return demo_kb_config(tmp_path_factory.mktemp("bad-input"))


def small_config(tmp_path: Path, tiny_config: Path, **ingest) -> Path:
    """The tiny config with a store of its own under ``tmp_path`` (for tests that damage or fill one)."""
    return write_tiny_config(tmp_path / "cfg.yaml", base=tiny_config, store={"path": str(tmp_path / "store")},
                             ingest=ingest)


# 1. A very long question is cut to fit the model's budget (or refused under --strict) ---------------------------


def test_long_question_is_cut_everywhere_or_refused(tiny_config, capsys, caplog):
    from generator.config import GeneratorConfig
    from rag.components import build_generator
    from rag.langchain import ReT2Retriever, build_answer_chain

    assert len(LONG_QUESTION) >= 120_000
    with caplog.at_level(logging.WARNING):
        rc, out, _ = cli(capsys, "ask", "--config", tiny_config, "-q", LONG_QUESTION, "--json")
    assert rc == 0
    answer = json.loads(out)
    cfg = yaml.safe_load(tiny_config.read_text())["generator"]
    assert answer["prompt_tokens"] <= cfg["context_token_budget"]
    assert "max_question_tokens" in caplog.text and "120," in caplog.text

    rc, _, err = cli(capsys, "ask", "--config", tiny_config, "-q", LONG_QUESTION, "--strict")
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "generator.max_question_tokens (256)" in err and "shorten it" in err

    generator = build_generator(GeneratorConfig(model="tiny-random/qwen2_vl", dtype="float32", device_map="cpu",
                                                max_new_tokens=2, context_token_budget=400, max_question_tokens=1000))
    built = generator.build_prompt(LONG_QUESTION)  # the budget binds before max_question_tokens does
    assert built.question_truncated and built.num_tokens <= 400
    short = generator.build_prompt("What is it?")
    assert not short.question_truncated and "What is it?" in short.text

    retriever = ReT2Retriever.from_config(str(tiny_config), k=2)
    try:
        chain = build_answer_chain(retriever, generator)
        result = chain.invoke({"question": LONG_QUESTION})
        assert isinstance(result["answer"], str) and len(result["sources"]) == 2
    finally:
        retriever.pipeline.close()


# 2. Decompression bombs, truncated and hostile images are per-item errors -------------------------------------------


def test_hostile_images_are_per_item_errors(tiny_config, tmp_path, capsys):
    from ret2vqa.errors import ImageError
    from ret2vqa.images import load_image

    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    cut = truncated_jpeg(tmp_path / "cut.jpg")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40)
    with pytest.raises(ImageError, match="decompression bomb") as exc:
        load_image(bomb)
    assert str(bomb) in str(exc.value)
    for path in (cut, garbage):
        with pytest.raises(ImageError, match="cannot read image"):
            load_image(path)

    kb = write_jsonl(tmp_path / "kb.jsonl", [
        {"id": "bomb", "text": "a passage with a huge image", "image": "bomb.png"},
        {"id": "cut", "text": "a passage with a truncated image", "image": "cut.jpg"},
        {"id": "garbage", "text": "a passage with a garbage image", "image": "garbage.png"},
        {"id": "fine", "text": "a passage without image"},
    ])
    config = small_config(tmp_path, tiny_config, image_root=str(tmp_path))
    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", kb, "--format", "jsonl", "--no-progress")
    assert rc == 0
    assert "the collection holds 4 points" in out and "encoded text-only: 3" in out and "bomb.png" in out

    rc, _, err = cli(capsys, "ask", "--config", config, "--image", bomb, "-q", "What is it?")
    assert rc == 2 and err.startswith("error: ") and str(bomb) in err and "decompression bomb" in err
    rc, _, err = cli(capsys, "search", "--config", config, "--image", cut, "--text", "what")
    assert rc == 2 and str(cut) in err


def test_eval_hostile_question_image_follows_the_image_policy(tiny_config, tmp_path, capsys):
    rows = _fixture_rows(3)
    questions = _infoseek_split(tmp_path, rows)
    image_id = rows[1]["image_id"]
    bomb_png(tmp_path / "images" / image_id[-8:-6] / f"{image_id}.jpg")
    args = ["eval", "infoseek", "--config", tiny_config, "--questions", questions, "--images", tmp_path / "images",
            "--no-progress"]
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "a")
    assert rc == 2 and rows[1]["data_id"] in err and image_id in err and "--missing-images text_only" in err
    rc, out, _ = cli(capsys, *args, "--out", tmp_path / "b", "--missing-images", "text_only")
    metrics = json.loads(out)
    assert rc == 0 and metrics["n_questions"] == 3 and metrics["missing_images"] == 1
    assert len((tmp_path / "b" / "predictions.jsonl").read_text().splitlines()) == 3


# 3. eval --lenient scores what it kept; duplicate question ids; the --qtype note ------------------------------------


def _infoseek_split(tmp_path: Path, rows: list[dict]) -> Path:
    src = FIXTURES / "infoseek"
    ids = {r["data_id"] for r in rows}
    tmp_path.mkdir(parents=True, exist_ok=True)
    questions = tmp_path / "infoseek_train.jsonl"
    write_jsonl(questions, rows)
    side = [line for line in (src / "infoseek_train_sample300_qtype.jsonl").read_text().splitlines()
            if json.loads(line)["data_id"] in ids]
    (tmp_path / "infoseek_train_qtype.jsonl").write_text("\n".join(side) + "\n")
    rng = np.random.default_rng(0)
    for row in rows:
        shard = tmp_path / "images" / row["image_id"][-8:-6]
        shard.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(shard / f"{row['image_id']}.jpg")
    return questions


def _fixture_rows(n: int) -> list[dict]:
    lines = (FIXTURES / "infoseek" / "infoseek_train_sample300.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:n]]


def test_eval_lenient_scores_kept_rows_and_duplicate_ids_are_errors(tiny_config, tmp_path, capsys):
    rows = _fixture_rows(4)
    questions = _infoseek_split(tmp_path, rows)
    with questions.open("a") as fh:
        fh.write('{"data_id": "broken", "question": \n')  # line 5: malformed
    args = ["eval", "infoseek", "--config", tiny_config, "--questions", questions, "--images", tmp_path / "images",
            "--qtype", tmp_path / "infoseek_train_qtype.jsonl", "--no-progress", "--batch-size", "2"]
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "strict")
    assert rc == 2 and f"{questions}:5" in err
    rc, out, _ = cli(capsys, *args, "--out", tmp_path / "lenient", "--lenient")
    assert rc == 0
    metrics = json.loads(out)
    assert metrics["n_questions"] == 4 and metrics["answer"] is not None
    assert set(metrics["answer"]) == {"final_score", "unseen_question_score", "unseen_entity_score"}
    notes = " ".join(metrics["notes"])
    assert f"{questions}: 1 malformed row(s) skipped: {questions}:5" in notes and "--qtype" not in notes

    dup = _infoseek_split(tmp_path / "dup", [*rows[:3], rows[1]])
    rc, _, err = cli(capsys, "eval", "infoseek", "--config", tiny_config, "--questions", dup, "--images",
                     tmp_path / "dup" / "images", "--out", tmp_path / "dup-run", "--no-progress")
    assert rc == 2 and f"{dup}:4" in err and f"duplicate data_id {rows[1]['data_id']!r} (first at line 2)" in err


# 4. JSONL: a byte-order mark is tolerated; undecodable bytes are reported with file:line ---------------------------


def test_jsonl_bom_and_invalid_utf8(tiny_config, tmp_path, capsys):
    from ret2vqa.errors import RowError
    from ret2vqa.io import MalformedRows, iter_csv, iter_jsonl, open_text

    rows = [{"id": f"p{i}", "text": f"passage number {i} about coffee"} for i in range(3)]
    bom = write_jsonl(tmp_path / "bom.jsonl", rows, prefix=b"\xef\xbb\xbf")
    assert [r["id"] for _, r in iter_jsonl(bom)] == ["p0", "p1", "p2"]
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "p0", "text": "ok"}\n{"id": "p1", "text": "caf\xe9"}\n{"id": "p2", "text": "ok too"}\n')
    with pytest.raises(RowError, match=r"latin1.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 26\)"):
        list(iter_jsonl(bad))
    lenient = MalformedRows(strict=False)
    assert [r["id"] for _, r in iter_jsonl(bad, lenient)] == ["p0", "p2"] and lenient.count == 1

    csv_file = tmp_path / "q.csv"
    csv_file.write_bytes(b"\xef\xbb\xbfquestion,answer\nwhat,caf\xc3\xa9\nwho,caf\xe9\n")
    with pytest.raises(RowError, match=r"q\.csv:3: not valid UTF-8"):
        list(iter_csv(csv_file))
    with open_text(tmp_path / "bom.jsonl") as fh:
        assert fh.read(5) == '{"id"'

    config = small_config(tmp_path, tiny_config)
    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", bom, "--format", "jsonl", "--no-progress")
    assert rc == 0 and "indexed 3 passages" in out and "malformed rows skipped: 0" in out
    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", bad, "--format", "jsonl", "--no-progress")
    assert rc == 0 and "indexed 2 passages" in out and f"malformed rows skipped: 1 (e.g. {bad}:2: not valid UTF-8" in out
    rc, _, err = cli(capsys, "index", "build", "--config", config, "--kb", bad, "--format", "jsonl", "--strict",
                     "--restart", "--no-progress")
    assert rc == 2 and f"{bad}:2: not valid UTF-8" in err


# 5. Store integrity: count against progress, repair, verify, damaged files ----------------------------------------


def _build_demo(capsys, config: Path) -> None:
    from rag.demo import KB_FILE

    # batches of 6: the write-ahead log keeps only the last ones, so a deleted segment loses points
    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", KB_FILE, "--format", "jsonl",
                     "--batch-size", "6", "--no-progress")
    assert rc == 0 and "the collection holds 36 points" in out


def test_lost_segment_is_reported_and_repaired(tiny_config, tmp_path, capsys):
    from rag.demo import KB_FILE

    config = small_config(tmp_path, tiny_config)
    _build_demo(capsys, config)
    rc, out, _ = cli(capsys, "index", "verify", "--config", config)
    assert rc == 0 and "36 points (progress records 36)" in out and "no problems found" in out

    segments = sorted((tmp_path / "store" / "kb" / "shard" / "segments").iterdir())
    shutil.rmtree(segments[0])
    rc, out, _ = cli(capsys, "index", "info", "--config", config)
    assert rc == 0 and "PROBLEM" in out and "its indexing progress records 36" in out
    rc, out, err = cli(capsys, "index", "verify", "--config", config, "--json")
    report = json.loads(out)
    assert rc == 2 and not report["ok"] and report["count"] < 36 and report["expected"] == 36
    assert "embedded collection 'kb'" in err and "is damaged" in err

    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", KB_FILE, "--format", "jsonl",
                     "--batch-size", "6", "--no-progress")
    assert rc == 0 and "repaired: the collection had lost" in out and "the collection holds 36 points" in out
    rc, out, _ = cli(capsys, "index", "verify", "--config", config)
    assert rc == 0 and "no problems found" in out


def test_lost_points_of_another_kb_refuse_with_instructions(tiny_config, tmp_path, capsys):
    from rag.demo import KB_FILE

    config = small_config(tmp_path, tiny_config)
    _build_demo(capsys, config)
    shutil.rmtree(sorted((tmp_path / "store" / "kb" / "shard" / "segments").iterdir())[0])
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "x", "text": "another knowledge base"}])
    rc, _, err = cli(capsys, "index", "build", "--config", config, "--kb", other, "--format", "jsonl",
                     "--no-progress")
    assert rc == 2 and "embedded collection 'kb'" in err and f"--kb {KB_FILE.resolve()} --format jsonl --restart" in err


@pytest.mark.parametrize("damage", ["vector", "payload"])
def test_truncated_store_files_are_a_clean_error(tiny_config, tmp_path, capsys, damage):
    from rag.demo import KB_FILE

    config = small_config(tmp_path, tiny_config)
    _build_demo(capsys, config)
    shard = tmp_path / "store" / "kb" / "shard"
    pattern = "vector_storage/vectors/chunk_0.mmap" if damage == "vector" else "payload_storage/page_0.dat"
    files = sorted(shard.glob(f"segments/*/{pattern}"))
    assert files
    for path in files:
        with open(path, "r+b") as fh:
            fh.truncate(64)
    rc, _, err = cli(capsys, "search", "--config", config, "--text", "coffee", "--exact")
    assert rc == 2 and err.startswith("error: embedded collection 'kb'") and "is damaged" in err
    assert "ret2vqa index verify" in err
    rc, out, err = cli(capsys, "index", "verify", "--config", config)
    assert rc == 2 and "problem: its points cannot be read back" in out and "is damaged" in err
    rc, out, _ = cli(capsys, "index", "info", "--config", config)
    assert rc == 0 and "PROBLEM          its points cannot be read back" in out and "move the collection away" in out
    rc, _, err = cli(capsys, "index", "build", "--config", config, "--kb", KB_FILE, "--format", "jsonl",
                     "--no-progress")
    assert rc == 2 and "embedded collection 'kb'" in err and "Move the collection away and build it again" in err


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_sample_reads_points_back_on_every_backend(tmp_path, backend):
    from rag.ingest.integrity import verify_collection
    from rag.store import CollectionMetadata, StoreConfig, open_store

    config = (StoreConfig(path=str(tmp_path), collection="kb") if backend == "edge"
              else StoreConfig(backend="server", url=":memory:", collection="kb"))
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    with open_store(config, expect=CollectionMetadata(encoder_name="x", dim=8), create=True) as store:
        store.upsert([f"p{i}" for i in range(5)], vectors, [{"text": f"t{i}"} for i in range(5)])
        sample = store.sample(3)
        assert len(sample) == 3 and all(p.vector.shape == (8,) and p.id.startswith("p") for p in sample)
        assert len(store.sample(10, with_vectors=False)) == 5 and store.sample(0) == []
        report = verify_collection(store, {"a": {"points": 5}})
        assert report.ok and report.count == 5 and report.sampled == 5 and report.searched
        assert verify_collection(store, {"a": {"points": 7}}).repairable


# 6. Silent or misleading results: wrong --format, duplicate ids, negative counts, resuming another run -------------


def test_wrong_format_and_duplicate_ids(tiny_config, tmp_path, capsys):
    config = small_config(tmp_path, tiny_config)
    kb = write_jsonl(tmp_path / "kb.jsonl", [{"id": "a", "text": "first passage"}, {"id": "b", "text": "second one"},
                                             {"id": "a", "text": "first passage again"}])
    rc, _, err = cli(capsys, "index", "build", "--config", config, "--kb", kb, "--format", "infoseek",
                     "--no-progress")
    assert rc == 2 and f"read 0 passages from {kb} as format 'infoseek'" in err and "is --format right?" in err
    assert f"{kb}:1" in err
    report_file = tmp_path / "report.json"
    rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", kb, "--format", "jsonl", "--batch-size",
                     "1", "--no-progress", "--report", report_file)
    assert rc == 0 and "the collection holds 2 points" in out
    assert "duplicate passage ids: 1" in out and "(2 distinct passages)" in out
    report = json.loads(report_file.read_text())
    assert report["passages_total"] == 3 and report["duplicate_ids"] == 1 and report["collection_count"] == 2
    rc, out, _ = cli(capsys, "index", "verify", "--config", config)
    assert rc == 0 and "2 points (progress records 2)" in out


@pytest.mark.parametrize("args, flag", [
    (["eval", "infoseek", "--questions", "q", "--images", "i", "--out", "o", "-k", "-2"], "-k"),
    (["eval", "infoseek", "--questions", "q", "--images", "i", "--out", "o", "--limit", "-1"], "--limit"),
    (["demo", "--tiny", "--questions", "-1"], "--questions"),
    (["search", "--text", "x", "--hnsw-ef", "-3"], "--hnsw-ef"),
    (["search", "--text", "x", "-k", "0"], "-k"),
    (["index", "build", "--config", "c", "--kb", "k", "--format", "jsonl", "--batch-size", "0"], "--batch-size"),
    (["eval", "m2kr", "--data", "d", "--out", "o", "--limit-passages", "-1"], "--limit-passages"),
    (["eval", "m2kr", "--data", "d", "--out", "o", "--depth", "0"], "--depth"),
    (["eval", "mbeir", "--root", "r", "--out", "o", "--batch-size", "-4"], "--batch-size"),
    (["eval", "mbeir", "--root", "r", "--out", "o", "--hnsw-ef", "-3"], "--hnsw-ef"),
    (["eval", "m2kr", "--data", "d", "--out", "o", "--ks", "1,x"], "--ks"),
    (["search", "--text", "x", "--hnsw-ef", "99999999999999999999"], "--hnsw-ef"),
])
def test_numeric_flags_are_checked_at_parse_time(capsys, args, flag):
    rc, out, err = cli(capsys, *args)
    assert rc == 2 and out == ""
    assert f": argument {flag}" in err and ("must be" in err or "expected" in err)
    assert err.startswith("error: ret2vqa ") and len(err.strip().splitlines()) == 1  # one line, no usage block


def test_eval_refuses_to_resume_another_questions_file(tiny_config, tmp_path, capsys):
    rows = _fixture_rows(3)
    first = _infoseek_split(tmp_path / "a", rows[:2])
    second = _infoseek_split(tmp_path / "b", rows[1:])
    out = tmp_path / "run"
    common = ["--config", tiny_config, "--out", out, "--no-progress", "--missing-images", "text_only"]
    rc, _, _ = cli(capsys, "eval", "infoseek", "--questions", first, "--images", tmp_path / "a" / "images", *common)
    assert rc == 0
    run = json.loads((out / "run.json").read_text())
    assert run["questions"] == str(first.resolve()) and "embedded collection 'kb'" in run["store"]
    assert run["encoder"] == "tiny-random/clip"
    rc, _, err = cli(capsys, "eval", "infoseek", "--questions", second, "--images", tmp_path / "b" / "images", *common)
    assert rc == 2 and "questions:" in err and str(second.resolve()) in err and "another --out" in err
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2  # nothing mixed in


# 7. Tracebacks on simple mistakes -----------------------------------------------------------------------------


def test_cuda_on_a_cpu_only_machine_names_the_field(tiny_config, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = write_tiny_config(tmp_path / "cuda.yaml", base=tiny_config, encoder={"device": "cuda"})
    for command in (["search", "--config", path, "--text", "x"], ["ask", "--config", path, "-q", "x"]):
        rc, _, err = cli(capsys, *command)
        assert rc == 2 and "encoder.device" in err and "no CUDA GPU" in err


# 8. First-session friction --------------------------------------------------------------------------------------


def test_offline_message_names_the_installed_hub_command():
    from ret2vqa.hub import ModelUnavailableError, download_command

    assert download_command("org/model", "v1") == "hf download org/model --revision v1"
    assert "hf download org/model" in str(ModelUnavailableError("org/model", None, "offline"))


def test_readme_first_session_works_as_written(tmp_path, capsys, monkeypatch):
    """`demo` then `ask --config <the same preset>` in one directory, as the README says (tiny preset, offline)."""
    readme = (REPO / "README.md").read_text()
    assert "ret2vqa ask --config configs/cpu.yaml --image rag/demo/images/rocket.jpg" in readme
    preset = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())["store"]
    assert f"collection {preset['collection']} in ./{preset['path']}/" in readme
    monkeypatch.chdir(tmp_path)
    rc, _, _ = cli(capsys, "demo", "--tiny", "--questions", "1")
    assert rc == 0
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())["store"]
    assert (tmp_path / tiny["path"] / tiny["collection"] / "collection.json").is_file()
    rc, out, _ = cli(capsys, "ask", "--config", REPO / "configs" / "tiny.yaml", "--image",
                     REPO / "rag" / "demo" / "images" / "rocket.jpg", "--question",
                     "Which satellite did this rocket launch in February 2015?")
    assert rc == 0 and "Sources (top 3 of 3" in out
    # ask and search take --store / --collection
    rc, out, _ = cli(capsys, "search", "--store", tmp_path / tiny["path"], "--collection", "kb", "--text", "rocket",
                     "--json")
    assert rc == 0 and len(json.loads(out)["hits"]) > 0
    # and the README's serving lines (`demo --tiny && serve --demo --tiny`) serve that same collection
    from rag.cli import build_parser
    from rag.cli.serve import serve_config
    from rag.pipeline import Pipeline

    cfg, _ = serve_config(build_parser().parse_args(["serve", "--demo", "--tiny"]))
    with Pipeline.from_config(cfg, load_generator=False) as pipe:
        assert pipe.store.count() == 36 and pipe.retrieve("rocket", None, k=2)
    rc, _, err = cli(capsys, "ask", "--config", REPO / "configs" / "tiny.yaml", "--store", tmp_path / tiny["path"],
                     "--collection", "nope", "-q", "x")
    assert rc == 2 and "no embedded collection 'nope'" in err and "collections there: kb" in err


def test_perfect_infoseek_predictions_without_unseen_question_rows_say_why_zero(tmp_path, capsys):
    rows = _fixture_rows(5)
    questions = _infoseek_split(tmp_path, rows)
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"data_id": r["data_id"], "prediction": r["answer"][0]} for r in rows])
    rc, out, err = cli(capsys, "score", "infoseek", "--pred", pred, "--ref", questions, "--qtype",
                       tmp_path / "infoseek_train_qtype.jsonl")
    result = json.loads(out)
    assert rc == 0 and result["final_score"] == 0.0 and result["unseen_entity_score"]["score"] == 100.0
    assert "final_score is 0.0 because no unseen_question question was scored" in err and "harmonic mean" in err


# 9. Memory: a runaway KB line is cut at chunking with a warning ---------------------------------------------------


def test_huge_kb_line_is_cut_with_a_warning(tiny_config, tmp_path, capsys, caplog):
    from rag.ingest.passages import chunk_words
    from rag.store import StoreConfig, open_store

    words = "lorem ipsum dolor sit amet " * 80_000  # 2.16 MB, one sentence
    assert sum(1 for _ in chunk_words(words, 100)) == 4000  # windows by index: linear
    kb = write_jsonl(tmp_path / "kb.jsonl", [{"id": "huge", "text": words}, {"id": "small", "text": "a small one"}])
    config = small_config(tmp_path, tiny_config)
    with caplog.at_level(logging.WARNING):
        rc, out, _ = cli(capsys, "index", "build", "--config", config, "--kb", kb, "--format", "jsonl",
                         "--no-progress")
    assert rc == 0 and "indexed 2 passages" in out and "1 texts cut to ingest.max_text_chars" in out
    assert f"{kb}:1: passage huge has 2,160,000 characters, over ingest.max_text_chars (1,000,000)" in caplog.text
    with open_store(StoreConfig(path=str(tmp_path / "store"), collection="kb")) as store:
        stored = store.retrieve(["huge", "small"])
    assert [p.id for p in stored] == ["huge", "small"] and 999_000 < len(stored[0].text) <= 1_000_000
