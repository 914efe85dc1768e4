"""The benchmark scripts run and write the JSON their issues promise (tiny sizes: a smoke run, not a measurement)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_encoder_bench_writes_the_promised_json(tmp_path):
    out = tmp_path / "encoder.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "encoder.py"), "--backbone", "clip-tiny", "--batch-size", "2",
         "--rounds", "1", "--reference-hidden", "128", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert {"backbone_ms", "ret2_ms", "ratio", "all_layers_ratio", "peak_mem_mb"} <= set(result)
    assert result["ratio"] > 0 and result["all_layers_ratio"] > 0
    variants = {row["variant"]: row for row in result["variants"]}
    assert set(variants) == {"backbone", "ret2", "ret2-all-layers", "ret2-hidden128", "ret-late-interaction"}
    assert variants["ret-late-interaction"]["steps"] == 4 and result["late_interaction_ratio"] > 0
    assert variants["ret2"]["steps"] == 3 and variants["ret2-all-layers"]["steps"] == 4
    assert result["setting"]["cell"]["hidden_size"] == 64  # the default: the narrower tower's width
    assert "x backbone" in run.stdout


def test_store_bench_writes_rows_for_every_backend(tmp_path):
    out = tmp_path / "store.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store.py"), "--sizes", "1500", "--queries", "20", "--exact-queries",
         "10", "--local-queries", "5", "--dim", "32", "--clusters", "20", "--intrinsic-dim", "8", "--ef-sweep", "32",
         "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())
    by_backend = {row["backend"]: row for row in rows if row["n"] == 1500}
    assert {"exact", "edge", "local"} <= set(by_backend)
    assert by_backend["exact"]["recall_at_10"] == 1.0
    assert by_backend["edge"]["recall_at_10"] > 0.9  # HNSW on 1,500 points is all but exact
    assert "than exact NumPy search" in run.stdout


def test_long_line_bench_writes_ratios(tmp_path):
    out = tmp_path / "long-line.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "long_line.py"), "--sizes-mb", "0.02", "0.2", "--format", "jsonl",
         "--max-text-chars", "20000", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())
    assert [row["size_mb"] for row in rows] == [0.02, 0.2] and all(row["passages"] == 2 for row in rows)
    assert rows[0]["time_ratio"] == 1.0 and {"seconds", "peak_rss_growth_mb", "memory_ratio"} <= set(rows[1])
    assert "x base" in run.stdout


def test_store_bench_multivector_measures_maxsim_recall_and_bytes_per_passage(tmp_path):
    out = tmp_path / "mv.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store.py"), "--multivector", "--sizes", "300", "--queries", "8",
         "--tokens", "4", "--dim", "16", "--clusters", "10", "--intrinsic-dim", "4", "--workdir",
         str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = {row["backend"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"exact", "edge-mv"} and all(r["multivector"] and r["tokens"] == 4 for r in rows.values())
    assert rows["exact"]["recall_at_10"] == 1.0 and rows["edge-mv"]["recall_at_10"] > 0.9
    assert rows["edge-mv"]["bytes_per_passage"] > 0 and rows["edge-mv"]["ram_bytes_per_passage"] >= 4 * 16
    assert {"upsert_per_s", "build_s", "p50_ms", "p95_ms"} <= set(rows["edge-mv"])
    assert "B/passage on disk" in run.stdout


@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_serve_bench_writes_rows_for_every_level(tmp_path, client):
    out = tmp_path / "serve.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve.py"), "--requests", "4", "--clients", "1", "2", "--warmup", "1",
         "--rounds", "2", "--client", client, "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    arms = [(row["arm"], row["clients"]) for row in result["rows"]]
    assert arms == [("in-process (sequential)", 1), ("server", 1), ("server", 2)]
    assert all(row["requests"] == 8 and row["req_per_s"] > 0 and row["p95_ms"] >= row["p50_ms"] for row in result["rows"])
    assert all(len(row["req_per_s_rounds"]) == 2 and row["req_per_s"] == pytest.approx(
        sum(row["req_per_s_rounds"]) / 2, rel=0.01) for row in result["rows"])  # the median of two rounds
    assert set(result["ratios"]) == {"1", "2"} and result["ratios"]["1"] == 1.0
    assert result["setting"]["k"] == 3 and "x 1 client" in run.stdout
    assert result["setting"]["client"] == client and all(row["mean_batch"] >= 1 for row in result["rows"])


def test_index_bench_writes_the_promised_json(tmp_path):
    out = tmp_path / "index.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "index.py"), "--passages", "60", "--rounds", "1", "--batch-sizes", "8",
         "16", "--ingest-batches", "2", "--workdir", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert {"encode_only_per_s", "end_to_end_per_s", "ratio"} <= set(result)
    assert result["encode_only_per_s"] > 0 and result["end_to_end_per_s"] > 0
    assert result["ratio"] == round(result["end_to_end_per_s"] / result["encode_only_per_s"], 3) or \
        abs(result["ratio"] - result["end_to_end_per_s"] / result["encode_only_per_s"]) < 0.01
    assert result["encoder_batch_size"] in (8, 16) and result["setting"]["passages"] == 60
    assert "end to end" in run.stdout


def test_generate_bench_rows_and_skips(tmp_path):
    out = tmp_path / "generate.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), "--sizes", "tiny", "--families", "qwen2_5_vl",
         "--batch-sizes", "1", "2", "--new-tokens", "2", "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    timed = [r for r in rows if "answers_per_s" in r]
    assert [r["batch_size"] for r in timed] == [1, 2] and all(r["precision"] == "bf16" for r in timed)
    assert all(r["tokens_per_s"] == pytest.approx(2 * r["answers_per_s"], rel=0.1, abs=0.1) for r in timed)
    import torch

    if not torch.cuda.is_available():  # 4-bit is reported as skipped, with the reason
        assert [r["skipped"] for r in rows if r["precision"] == "4bit"] == ["4-bit needs CUDA"]


def test_gpu_script_parses_and_its_vector_check_runs_on_cpu(tmp_path):
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu.sh")]).returncode == 0
    out = tmp_path / "vectors.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_checks.py"), "vectors", "--device", "cpu", "--smoke", "--json",
         str(out)], capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["passed"] and len(result["rows"]) == 7
