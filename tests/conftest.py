"""Test-wide setup: offline hub, deterministic torch, shared paths.

Tests build tiny randomly initialised models from real ``transformers`` config
classes; nothing is downloaded. ``HF_HUB_OFFLINE`` is set before any Hugging Face
library is imported so that an accidental hub lookup fails fast instead of hanging.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_YAML = REPO_ROOT / "configs" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Commands run in-process (``demo --tiny``, ``serve``) set torch's thread count for the whole
    process; restore it, so that a later test computes as its subprocesses do (same thread count,
    same floating-point summation order)."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def write_tiny_config(path: Path, base: Path = TINY_YAML, **sections: dict) -> Path:
    """``base`` (configs/tiny.yaml) with keys of its sections replaced, e.g. ``store={"path": ...}``,
    written to ``path``: the config file a user would edit, for tests that run commands on it."""
    import yaml

    config = yaml.safe_load(Path(base).read_text())
    for section, values in sections.items():
        config[section] = {**(config.get(section) or {}), **values}
    path.write_text(yaml.safe_dump(config))
    return path


def demo_kb_config(root: Path, **sections: dict) -> Path:
    """configs/tiny.yaml with its store under ``root`` holding the bundled demo KB (36 passages),
    built by ``ret2vqa index build``; ``sections`` replace further keys (e.g. the encoder)."""
    from rag.cli import main
    from rag.demo import DEMO_DIR, KB_FILE

    sections = {**sections, "store": {"path": str(root / "store"), **sections.get("store", {})},
                "ingest": {"image_root": str(DEMO_DIR), **sections.get("ingest", {})}}
    path = write_tiny_config(root / "tiny.yaml", **sections)
    assert main(["index", "build", "--config", str(path), "--kb", str(KB_FILE), "--format", "jsonl",
                 "--no-progress"]) == 0
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (real InfoSeek rows, public-domain images)."""
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def tiny_pipeline_config(store_dir, **retrieval):
    """A pipeline config with the tiny encoder, an embedded store in ``store_dir`` and a tiny generator."""
    from rag.config import PipelineConfig
    from rag.demo import DEMO_DIR

    return PipelineConfig.from_dict({
        "encoder": {"name_or_path": "tiny-random/clip", "revision": "seed0", "device": "cpu"},
        "store": {"path": str(store_dir), "collection": "demo", "hnsw": {"m": 16, "ef_construct": 64, "hnsw_ef": 64}},
        "ingest": {"batch_size": 16, "image_root": str(DEMO_DIR)},
        "generator": {"model": "tiny-random/qwen2_vl", "dtype": "float32", "device_map": "cpu",
                      "max_new_tokens": 6, "context_token_budget": 600},
        "retrieval": {"k": 3, "instruction": "", **retrieval},
    }, where="test")


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The bundled demo KB indexed with the tiny encoder, opened as a :class:`rag.pipeline.Pipeline`."""
    from rag.demo import KB_FILE
    from rag.ingest.indexer import build_index
    from rag.pipeline import Pipeline

    cfg = tiny_pipeline_config(tmp_path_factory.mktemp("demo-store"))
    report = build_index(cfg, KB_FILE, "jsonl", show_progress=False)
    assert report.passages_total == 36 and report.malformed == 0
    with Pipeline.from_config(cfg) as pipe:
        yield pipe
