"""The wiring: one config root read the same way by every command, one composition root, honest errors.

* a typo'd section or key in the YAML fails for every command, naming the file and the dotted field;
* command-line overrides go through the same checks;
* an internal error (a bug) keeps its traceback; a user error is one ``error:`` line;
* tiny random models are spelled ``tiny-random/<family>`` everywhere and built by the composition root;
* the composition root opens a collection with the configured encoder or, when none is configured, its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rag.cli import main
from rag.config import PipelineConfig
from ret2vqa.errors import ConfigError, InputError, MissingFileError, StoreLockedError, UserError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def commands(config: Path, tmp: Path) -> dict[str, list[str]]:
    """Every command that reads a pipeline config, with the arguments it needs to get that far."""
    csv = FIXTURES / "evqa" / "evqa_test_sample.csv"
    questions = FIXTURES / "infoseek" / "infoseek_train_sample300.jsonl"
    return {
        "index build": ["index", "build", "--config", str(config), "--kb", str(FIXTURES / "kb" / "wiki_kb.jsonl"),
                        "--format", "infoseek", "--no-progress"],
        "index info": ["index", "info", "--config", str(config)],
        "search": ["search", "--config", str(config), "--text", "x"],
        "ask": ["ask", "--config", str(config), "-q", "What is this?"],
        "eval infoseek": ["eval", "infoseek", "--config", str(config), "--questions", str(questions), "--images",
                          str(tmp), "--out", str(tmp / "o1"), "--no-progress"],
        "eval evqa": ["eval", "evqa", "--config", str(config), "--questions", str(csv), "--images", str(tmp),
                      "--out", str(tmp / "o2"), "--no-progress"],
        "eval m2kr": ["eval", "m2kr", "--config", str(config), "--queries", str(FIXTURES / "m2kr/ret/okvqa_test.jsonl"),
                      "--passages", str(FIXTURES / "m2kr/ret/okvqa_passages_test.jsonl"), "--images", str(tmp),
                      "--out", str(tmp / "o3"), "--no-progress"],
        "eval mbeir": ["eval", "mbeir", "--config", str(config), "--root", str(FIXTURES / "mbeir/M-BEIR"),
                       "--out", str(tmp / "o4"), "--no-progress"],
        "demo": ["demo", "--config", str(config), "--store", str(tmp / "demo")],
        "doctor": ["doctor", "--config", str(config)],
    }


TYPOS = [
    ({**TINY, "stor": {"path": "x"}}, "stor: unknown section"),
    ({**TINY, "store": {**TINY["store"], "pathh": "x"}}, "store.pathh: unknown field for StoreConfig"),
    ({**TINY, "store": {**TINY["store"], "hnsw": {"m": 16, "ef_constrcut": 8}}}, "store.hnsw.ef_constrcut: unknown field"),
    ({**TINY, "generator": {**TINY["generator"], "max_new_token": 4}}, "generator.max_new_token: unknown field"),
    ({**TINY, "retrieval": {"k": -1}}, "retrieval.k: must be >= 0"),
    ({**TINY, "encoder": {"name_or_path": "tiny-random/clip", "batch_size": 0}}, "encoder.batch_size: must be >= 1"),
]


@pytest.mark.parametrize("data, message", TYPOS, ids=[m.split(":")[0] for _, m in TYPOS])
def test_a_config_mistake_fails_every_command_naming_file_and_field(tmp_path, capsys, data, message):
    config = write(tmp_path / "typo.yaml", data)
    for name, argv in commands(config, tmp_path).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {config}: {message}"), (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err, name


def test_command_line_overrides_are_checked_like_the_yaml(tmp_path, capsys):
    config = write(tmp_path / "ok.yaml", TINY)
    assert main(["index", "build", "--config", str(config), "--kb", str(FIXTURES / "kb" / "wiki_kb.jsonl"),
                 "--format", "infoseek", "--batch-size", "3", "--collection", "a/b"]) == 2
    assert capsys.readouterr().err.startswith("error: command line: store.collection: must be a plain name")
    base = PipelineConfig.from_yaml(config)
    changed = base.override({"store.path": str(tmp_path / "q"), "ingest.batch_size": 7, "encoder.device": None})
    assert (changed.store.path, changed.ingest.batch_size, changed.encoder.device) == (str(tmp_path / "q"), 7, "cpu")
    assert base.store.path == TINY["store"]["path"]  # the original is left as it was
    with pytest.raises(ConfigError, match=r"^--flags: ingest\.batch_size: expected an integer"):
        base.override({"ingest.batch_size": "many"}, where="--flags")
    with pytest.raises(ConfigError, match=r"^command line: ingest\.chunk_tokens: must be >= 8 words"):
        base.override({"ingest.chunk_tokens": 2})


def test_an_internal_error_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    """A bug (here: a KeyError from inside the pipeline) is not disguised as a user mistake."""
    from rag.demo import DEMO_DIR, KB_FILE
    from rag.pipeline import Pipeline

    config = write(tmp_path / "c.yaml", {**TINY, "store": {"path": str(tmp_path / "s"), "collection": "kb"},
                                         "ingest": {"image_root": str(DEMO_DIR)}})
    assert main(["index", "build", "--config", str(config), "--kb", str(KB_FILE), "--format", "jsonl",
                 "--no-progress"]) == 0
    capsys.readouterr()

    def broken(self, *args, **kwargs):
        return {}["passages"]  # the kind of bug a refactoring leaves behind

    monkeypatch.setattr(Pipeline, "retrieve_batch", broken)
    with pytest.raises(KeyError, match="passages"):
        main(["ask", "--config", str(config), "-q", "What is this?"])
    assert "error:" not in capsys.readouterr().err
    monkeypatch.undo()
    # the same command with a mistake the user can fix is one line
    assert main(["ask", "--config", str(config), "-q", "What is this?", "--image", str(tmp_path / "none.jpg")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_user_errors_are_one_hierarchy_and_keep_their_builtin_bases():
    from rag.store import CollectionMismatchError, CollectionNotFoundError, StoreError
    from ret2vqa.hub import ModelUnavailableError
    from ret2vqa.io import RowError
    from retriever import ItemError

    for cls in (ConfigError, MissingFileError, InputError, RowError, ItemError, ModelUnavailableError, StoreError,
                StoreLockedError, CollectionNotFoundError, CollectionMismatchError):
        assert issubclass(cls, UserError), cls
    assert issubclass(ConfigError, ValueError) and issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(CollectionNotFoundError, FileNotFoundError) and issubclass(RowError, ValueError)
    assert not issubclass(KeyError, UserError)


def test_a_locked_collection_is_reported_by_the_cli_naming_the_holder(tmp_path, capsys):
    import os

    from rag.components import open_collection
    from rag.demo import KB_FILE

    config = write(tmp_path / "c.yaml", {**TINY, "store": {"path": str(tmp_path / "s"), "collection": "kb"}})
    assert main(["index", "build", "--config", str(config), "--kb", str(KB_FILE), "--format", "jsonl",
                 "--no-progress"]) == 0
    capsys.readouterr()
    store, _ = open_collection(PipelineConfig.from_yaml(config))
    with store:
        assert main(["search", "--config", str(config), "--text", "coffee"]) == 2
        assert f"already open in this process (pid {os.getpid()})" in capsys.readouterr().err
        assert main(["index", "info", "--config", str(config), "--json"]) == 0  # info reads around the lock
        assert '"note"' in capsys.readouterr().out


def test_tiny_models_have_one_spelling_and_are_built_by_the_composition_root():
    from generator import GeneratorConfig
    from rag.components import build_encoder, build_generator
    from retriever import EncoderConfig

    ret2 = build_encoder(EncoderConfig(name_or_path="tiny-random/siglip", revision="seed3"))
    dual = build_encoder(EncoderConfig(name_or_path="tiny-random/clip", type="dual_encoder"))
    gen = build_generator(GeneratorConfig(model="tiny-random/llava", device_map="cpu", max_new_tokens=2))
    assert (ret2.name_or_path, ret2.revision, ret2.model.spec.name) == ("tiny-random/siglip", "seed3", "siglip")
    assert (type(dual).__name__, dual.revision) == ("DualEncoder", "seed0")
    assert gen.model_type == "llava" and isinstance(gen.answer("What is this?"), str)
    assert build_encoder(EncoderConfig(name_or_path="tiny-random/siglip", revision="seed3")).fingerprint == \
        ret2.fingerprint != build_encoder(EncoderConfig(name_or_path="tiny-random/siglip")).fingerprint
    with pytest.raises(ConfigError, match=r"revision: the revision of a tiny random model is its seed"):
        build_encoder(EncoderConfig(name_or_path="tiny-random/clip", revision="main"))
    with pytest.raises(ConfigError, match="'tiny' is spelled 'tiny-random/clip'"):
        EncoderConfig(name_or_path="tiny")
    for path in [*REPO.glob("configs/*.yaml"), *REPO.glob("configs/*/*.yaml")]:
        text = path.read_text()
        assert "tiny_backbone" not in text and "tiny_seed" not in text and "tiny:" not in text, path


def test_a_collection_built_before_tiny_models_were_renamed_still_opens():
    from retriever import EncoderConfig

    legacy = {"type": "ret2", "tiny": True, "tiny_backbone": "siglip", "tiny_seed": 4}
    config = EncoderConfig.from_loader_spec(legacy, base=EncoderConfig(batch_size=8, device="cpu"))
    assert (config.name_or_path, config.revision, config.batch_size, config.device) == (
        "tiny-random/siglip", "seed4", 8, "cpu")
    assert EncoderConfig.from_loader_spec(config.loader_spec()) == EncoderConfig(name_or_path="tiny-random/siglip",
                                                                                 revision="seed4")


def test_dtype_auto_means_the_same_for_encoder_and_generator():
    import torch

    from generator import GeneratorConfig
    from generator.loading import torch_dtype
    from ret2vqa.devices import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32 == torch_dtype(GeneratorConfig(device_map="cpu"))
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        assert resolve_dtype("auto", "cuda") == torch_dtype(GeneratorConfig(device_map="cuda:0"))
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        if not torch.cuda.is_available():
            from ret2vqa.devices import resolve_device

            resolve_device("cuda", "encoder.device")
        else:  # pragma: no cover
            raise ConfigError("no CUDA GPU (skipped on GPU machines)")


def test_m2kr_is_read_by_one_reader_so_ingestion_and_training_accept_the_same_rows(tmp_path):
    """The original M2KR layout (``passage_content``, ``pos_item_ids``, integer ids) and ReT's jsonl variant."""
    import json

    from rag.ingest import IngestConfig, make_reader
    from ret2vqa.io import MalformedRows
    from retriever.training import read_m2kr

    passages = tmp_path / "passages.jsonl"
    passages.write_text("\n".join(json.dumps(r) for r in [
        {"passage_id": 7, "passage_content": "Eiffel Tower. A wrought-iron lattice tower in Paris.", "title": "ET"},
        {"passage_id": "p2", "passage_text": "Colosseum. An amphitheatre in Rome."},
        {"passage_text": "no id here"},
    ]) + "\n")
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(r) for r in [
        {"data_id": 1, "instruction": "Retrieve a passage:", "question": "Which tower?", "pos_item_ids": [7]},
        {"data_id": "q2", "question": "Which amphitheatre?", "passage_id": "p2", "answer": "Colosseum"},
        {"data_id": "q3", "question": "No positive"},
    ]) + "\n")

    ingest_errors = MalformedRows()
    indexed = [p for p, _ in make_reader("m2kr", passages, IngestConfig(), ingest_errors).passages()]
    assert [(p.id, p.title) for p in indexed] == [("7", "ET"), ("p2", "")]
    assert indexed[0].payload["title"] == "ET" and indexed[0].text.startswith("Eiffel Tower")

    train_errors = MalformedRows()
    pairs = list(read_m2kr(queries, passages, errors=train_errors, check_images=False))
    assert [(p.entity, p.query_text, p.doc_text) for p in pairs] == [
        ("7", "Retrieve a passage: Which tower?", "Eiffel Tower. A wrought-iron lattice tower in Paris."),
        ("p2", "Which amphitheatre?", "Colosseum. An amphitheatre in Rome."),
    ]
    # the same malformed passage row is reported, with file and line, by both
    assert ingest_errors.count == 1 and ingest_errors.examples[0].startswith(f"{passages}:3: missing or empty 'passage_id'")
    assert f"{passages}:3: missing or empty 'passage_id'" in train_errors.examples[0]
    assert any(e.startswith(f"{queries}:3: missing positive") for e in train_errors.examples)
