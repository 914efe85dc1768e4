"""``ret2vqa index build / index info / search`` end to end, including a build killed with SIGKILL
and resumed, and a two-process build (``torchrun`` on CPU, as ``accelerate launch`` on GPUs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.cli import index as index_cli
from rag.cli import search as search_cli
from rag.config import PipelineConfig
from rag.ingest import build_index, make_reader
from rag.store import StoreConfig, open_store

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVQA = FIXTURES / "kb" / "evqa_kb.json"
WIKI = FIXTURES / "kb" / "wiki_kb.jsonl"


def write_config(path: Path, store: Path, batch_size: int = 32, seed: int = 0) -> Path:
    path.write_text(
        f"encoder: {{name_or_path: tiny-random/clip, revision: seed{seed}, batch_size: 32, device: cpu}}\n"
        f"store: {{path: {store}, collection: kb, hnsw: {{m: 16, ef_construct: 64}}}}\n"
        f"ingest: {{batch_size: {batch_size}, chunk_tokens: 16}}\n"
    )
    return path


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "tiny.yaml", root / "qdrant")
    assert index_cli.main(["build", "--config", str(config), "--kb", str(EVQA), "--format", "evqa", "--no-progress"]) == 0
    assert index_cli.main(["build", "--config", str(config), "--kb", str(WIKI), "--format", "infoseek", "--no-progress",
                           "--report", str(root / "report.json")]) == 0
    return root, config


def test_build_prints_a_summary_and_writes_a_report(cli_store, capsys):
    root, config = cli_store
    report = json.loads((root / "report.json").read_text())
    assert report["passages_total"] == 141 and report["collection_count"] == 191 and report["complete"]
    assert index_cli.main(["build", "--config", str(config), "--kb", str(WIKI), "--format", "infoseek", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "indexed 141 passages" in out and "0 this run" in out and "malformed rows skipped: 0" in out


def test_index_info_shows_count_encoder_dimension_config_and_progress(cli_store, capsys):
    root, config = cli_store
    assert index_cli.main(["info", "--store", str(root / "qdrant"), "--collection", "kb", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 191 and info["metadata"]["encoder_name"] == "tiny-random/clip"
    assert info["metadata"]["encoder_loader"] == {"type": "ret2", "name_or_path": "tiny-random/clip", "revision": "seed0"}
    assert info["metadata"]["config"]["store"]["hnsw"]["m"] == 16
    assert sorted(s["passages"] for s in info["ingest"].values()) == [50, 141]
    assert index_cli.main(["info", "--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "points           191" in table and "dimension" in table and "wiki_kb.jsonl (infoseek): 141 passages" in table


def test_search_ranks_a_passage_first_for_its_own_text_as_table_and_json(cli_store, capsys):
    root, config = cli_store
    passages = [p for p, _ in make_reader("infoseek", WIKI, PipelineConfig.from_yaml(config).ingest).passages()]
    target = passages[20]
    # No --config: the encoder is rebuilt from the collection metadata.
    args = ["--store", str(root / "qdrant"), "--collection", "kb", "--text", target.text, "--instruction", "", "-k", "3"]
    assert search_cli.main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["id"] == target.id and out["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert out["hits"][0]["payload"]["wikidata_id"] == target.payload["wikidata_id"] and len(out["hits"]) == 3
    assert search_cli.main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["rank", "score", "passage", "title"] and target.id in table[2]
    image = str(FIXTURES / "images" / "rocket.jpg")
    assert search_cli.main(["--config", str(config), "--image", image, "--filter", "wikidata_id=Q405",
                            "--filter", "wikidata_id=Q2", "-k", "20", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and {h["payload"]["wikidata_id"] for h in hits} <= {"Q405", "Q2"}


def test_cli_errors_are_one_line_with_exit_status_2(cli_store, tmp_path, capsys):
    root, _ = cli_store
    other = write_config(tmp_path / "other.yaml", root / "qdrant", seed=1)  # another encoder, same collection
    assert index_cli.main(["build", "--config", str(other), "--kb", str(EVQA), "--format", "evqa", "--no-progress"]) == 2
    assert "was built with encoder 'tiny-random/clip'" in capsys.readouterr().err
    assert search_cli.main(["--config", str(other), "--text", "x"]) == 2
    assert "fingerprint mismatch" in capsys.readouterr().err
    assert search_cli.main(["--store", str(root / "qdrant"), "--collection", "nope", "--text", "x"]) == 2
    assert "no embedded collection 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    strict_cfg = write_config(tmp_path / "strict.yaml", tmp_path / "strict")
    assert index_cli.main(["build", "--config", str(strict_cfg), "--kb", str(bad), "--format", "jsonl", "--strict",
                           "--no-progress"]) == 2
    assert f"error: {bad}:2: invalid JSON" in capsys.readouterr().err


def synthetic_jsonl(path: Path, n: int) -> Path:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    with open(path, "w") as fh:
        for i in range(n):
            text = " ".join(words[(i * k) % len(words)] for k in range(1, 6)) + f" {i}."
            fh.write(json.dumps({"id": f"p{i}", "text": text, "metadata": {"n": i}}) + "\n")
    return path


def vectors_of(store_root: Path, ids: list[str]) -> tuple[int, dict]:
    with open_store(StoreConfig(path=str(store_root), collection="kb")) as store:
        return store.count(), {r.id: r.vector for r in store.retrieve(ids, with_vectors=True)}


def test_build_killed_with_sigkill_resumes_without_losing_or_duplicating(tmp_path):
    kb = synthetic_jsonl(tmp_path / "kb.jsonl", 400)
    config = write_config(tmp_path / "c.yaml", tmp_path / "killed", batch_size=4)
    state = tmp_path / "killed" / "kb" / "state" / "ingest.json"
    cmd = [sys.executable, "-m", "rag.cli.index", "build", "--config", str(config), "--kb", str(kb), "--format", "jsonl",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = next(iter(json.loads(state.read_text()).values()))["passages"]
        except (FileNotFoundError, ValueError, StopIteration):
            done = 0
        if done >= 40:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = next(iter(json.loads(state.read_text()).values()))
    assert 40 <= saved["passages"] < 400 and not saved["complete"]

    loaded = PipelineConfig.from_yaml(config)
    resumed = build_index(loaded, kb, "jsonl", show_progress=False)
    assert resumed.resumed_from == saved["passages"] and resumed.passages_total == 400 and resumed.complete

    reference = PipelineConfig.from_yaml(config).override({"store.path": str(tmp_path / "reference")})
    build_index(reference, kb, "jsonl", show_progress=False)
    ids = [f"p{i}" for i in range(400)]
    count, vectors = vectors_of(tmp_path / "killed", ids)
    ref_count, ref_vectors = vectors_of(tmp_path / "reference", ids)
    assert count == ref_count == 400
    for pid in ids:
        np.testing.assert_array_equal(vectors[pid], ref_vectors[pid])


def test_two_process_launch_matches_a_single_process_build(tmp_path, cli_store):
    """``torchrun --nproc_per_node 2`` on CPU (gloo): what ``accelerate launch --multi_gpu`` does on GPUs."""
    root, _ = cli_store
    config = write_config(tmp_path / "c.yaml", tmp_path / "dist")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rag.cli.index", "build",
           "--config", str(config), "--kb", str(WIKI), "--format", "infoseek", "--no-progress",
           "--report", str(tmp_path / "report.json")]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["processes"] == 2 and report["passages_total"] == 141 and report["collection_count"] == 141
    assert result.stdout.count("indexed 141 passages") == 1  # only the main process reports
    ids = [p.id for p, _ in make_reader("infoseek", WIKI, PipelineConfig.from_yaml(config).ingest).passages()]
    _, dist = vectors_of(tmp_path / "dist", ids)
    _, single = vectors_of(root / "qdrant", ids)
    for pid in ids:
        np.testing.assert_allclose(dist[pid], single[pid], atol=1e-5)


def test_filter_flags_parse_to_the_store_filter_form():
    assert search_cli.parse_filter_args([]) is None
    assert search_cli.parse_filter_args(["wikidata_id=Q42", "section_index=0", "wikidata_id=Q5", 'code="007"']) == {
        "wikidata_id": ["Q42", "Q5"], "section_index": 0, "code": "007"}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        search_cli.parse_filter_args(["wikidata_id"])
