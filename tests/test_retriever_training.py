"""ReT-2 training: the loss, data readers, a real short run on a synthetic task, resumption, the CLI."""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from rag.components import build_training_encoder
from ret2vqa.io import MalformedRows, RowError
from retriever import ReT2Encoder
from retriever.training import (
    ContrastiveLoss,
    DataConfig,
    ModelInitConfig,
    Trainer,
    TrainingConfig,
    read_m2kr,
    read_pairs,
)
from retriever.training.loss import multi_positive_nce
from retriever.training.synthetic import write_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root, per_class=20, val_per_class=5, seed=0)


def make_config(out, train_file, val_file=None, **kw):
    defaults = dict(batch_size=24, max_steps=150, warmup_steps=10, learning_rate=1e-3,
                    backbone_learning_rate=1e-3, save_every=1000, log_every=10)
    defaults.update(kw)
    return TrainingConfig(output_dir=str(out), model=ModelInitConfig(backbone="tiny-random/clip"),
                          data=DataConfig(train_file=str(train_file), val_file=str(val_file) if val_file else None,
                                          num_workers=0), **defaults)


def new_trainer(cfg, cls=Trainer):
    """A trainer from the encoder the composition root builds for ``cfg`` (as ``ret2vqa train`` does)."""
    return cls(cfg, build_training_encoder(cfg.model, seed=cfg.seed))


def test_multi_positive_nce_matches_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    positives = torch.tensor([[True, True, False], [False, False, True]])
    expected_0 = -math.log((math.exp(2) + math.exp(1)) / (math.exp(2) + math.exp(1) + 1))
    expected_1 = -math.log(math.exp(3) / (2 * math.exp(0.5) + math.exp(3)))
    assert multi_positive_nce(logits, positives).item() == pytest.approx((expected_0 + expected_1) / 2, rel=1e-6)


def test_contrastive_loss_is_symmetric_and_uses_entity_positives():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    loss_fn = ContrastiveLoss(temperature_init=0.1)
    distinct, _ = loss_fn(q, d, torch.tensor([1, 2, 3, 4]))
    swapped, _ = loss_fn(d, q, torch.tensor([1, 2, 3, 4]))
    assert distinct.item() == pytest.approx(swapped.item(), rel=1e-6)
    # items 0 and 1 share an entity: each one's document now counts as a positive for the other
    shared, _ = loss_fn(q, d, torch.tensor([1, 1, 3, 4]))
    assert shared.item() < distinct.item()
    # perfectly aligned pairs at low temperature give a near-zero loss
    aligned, stats = ContrastiveLoss(temperature_init=0.01)(q, q, torch.arange(4))
    assert aligned.item() < 0.05 and stats["in_batch_acc"] == 1.0


def test_short_training_run_learns_the_synthetic_task(tmp_path, shapes):
    train_file, val_file = shapes
    trainer = new_trainer(make_config(tmp_path / "run", train_file, val_file))
    before = _recall(trainer)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.history]
    assert np.mean(losses[-3:]) < 0.6 * losses[0], losses
    chance = 1 / 12
    assert before["recall@1"] < 0.2
    assert result["recall@1"] >= 3 * chance, result
    assert result["recall@5"] >= 0.8, result
    # the final model is saved in transformers format and reloads to the same vectors
    reloaded = ReT2Encoder.from_pretrained(str(tmp_path / "run" / "final"))
    enc = ReT2Encoder(trainer.accelerator.unwrap_model(trainer.model), trainer.processor, device="cpu")
    items = [{"text": "a red circle"}, {"image": str(train_file.parent / "images" / "val-red-circle-0.png")}]
    np.testing.assert_allclose(reloaded.encode(items), enc.encode(items), atol=1e-6)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 150 and {"loss", "lr", "temperature", "in_batch_acc"} <= set(log[-1])


def _recall(trainer):
    from retriever.training.trainer import retrieval_recall

    encoder = ReT2Encoder(trainer.model, trainer.processor, device="cpu")
    metrics = retrieval_recall(encoder, trainer.val_pairs)
    trainer.model.train()
    return metrics


class _Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, shapes):
    train_file, _ = shapes
    kw = dict(max_steps=24, save_every=8, batch_size=16)
    straight = new_trainer(make_config(tmp_path / "a", train_file, **kw))
    straight.train()

    class Crashing(Trainer):
        def save_checkpoint(self):
            path = super().save_checkpoint()
            if self.global_step == 16:
                raise _Interrupt
            return path

    with pytest.raises(_Interrupt):
        new_trainer(make_config(tmp_path / "b", train_file, **kw), Crashing).train()
    resumed = new_trainer(make_config(tmp_path / "b", train_file, **kw))
    result = resumed.train()
    assert result["resumed"] is True and result["global_step"] == 24
    a = straight.accelerator.unwrap_model(straight.model).state_dict()
    b = resumed.accelerator.unwrap_model(resumed.model).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)
    # only the last `keep_checkpoints` checkpoints are kept
    kept = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert kept == ["step-16", "step-24"]


def test_read_pairs_reports_malformed_rows_with_line_numbers(tmp_path):
    (tmp_path / "img.png").write_bytes(b"")  # exists; content irrelevant for reading
    rows = [
        {"query": "q1", "passage": "p1", "entity_id": "E1"},
        "not an object",
        {"query": "q2", "query_image": "missing.png", "passage": "p2"},
        {"query": None, "passage": "p3"},
        {"query": "q4", "passage": None, "passage_image": None},
        {"query": "q5", "query_image": "img.png", "passage": "p5"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
    errors = MalformedRows()
    pairs = list(read_pairs(path, errors=errors, default_instruction="Find:"))
    assert [p.query_text for p in pairs] == ["Find: q1", "Find: q5"]
    assert pairs[0].entity == "E1" and pairs[1].query_image.endswith("img.png")
    assert errors.count == 5
    joined = "\n".join(errors.examples)
    for line, text in [(2, "expected a JSON object"), (3, "image file not found"), (4, "neither 'query' text"),
                       (5, "neither 'passage' text"), (7, "invalid JSON")]:
        assert f"train.jsonl:{line}: " in joined and text in joined
    with pytest.raises(RowError, match=r"train\.jsonl:2: expected a JSON object"):
        list(read_pairs(path, errors=MalformedRows(strict=True)))


def test_read_m2kr_layout(tmp_path):
    passages = [
        {"passage_id": "P1", "passage_text": "Eiffel Tower text", "passage_image_path": None},
        {"passage_id": "P2", "passage_text": "Colosseum text", "passage_image_path": "gone.jpg"},
    ]
    queries = [
        {"data_id": "q1", "instruction": "Retrieve:", "question": "When was it built?", "image_path": None,
         "passage_id": ["P1"], "answer": ["1889"]},
        {"data_id": "q2", "instruction": "Retrieve:", "question": None, "image_path": None, "passage_id": "P2"},
        {"data_id": "q3", "instruction": "Retrieve:", "question": "x", "passage_id": ["P9"]},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in passages))
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    errors = MalformedRows()
    pairs = list(read_m2kr(tmp_path / "q.jsonl", tmp_path / "p.jsonl", errors=errors))
    assert [(p.query_text, p.doc_text, p.entity) for p in pairs] == [
        ("Retrieve: When was it built?", "Eiffel Tower text", "P1"),
        ("Retrieve:", "Colosseum text", "P2"),
    ]
    assert pairs[1].doc_image is None  # missing passage image: the passage is kept as text
    assert errors.count == 2
    assert any("p.jsonl:2" in e and "gone.jpg" in e for e in errors.examples)
    assert any("q.jsonl:3" in e and "P9" in e for e in errors.examples)


def test_config_errors_name_the_field(tmp_path):
    from ret2vqa.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="exactly one of from_pretrained or backbone"):
        ModelInitConfig(from_pretrained="runs/x/final", backbone="openai/clip-vit-base-patch32")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: data\.batch: unknown field for DataConfig"):
        from_dict(TrainingConfig, {"output_dir": "x", "model": {"backbone": "tiny-random/clip"},
                                   "data": {"train_file": "t", "batch": 3}}, where="cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: max_steps: must be >= 1"):
        from_dict(TrainingConfig, {"output_dir": "x", "model": {"backbone": "tiny-random/clip"},
                                   "data": {"train_file": "t"}, "max_steps": 0}, where="cfg.yaml")
    # a tiny backbone is built by the composition root; the trainer alone says so instead of looking it up
    from ret2vqa.hub import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="tiny random models are built in code"):
        Trainer(make_config(tmp_path / "t", tmp_path / "t.jsonl"))


def test_train_cli(tmp_path, shapes, capsys):
    from rag.cli import main

    train_file, val_file = shapes
    config = {
        "output_dir": str(tmp_path / "cli-run"),
        "model": {"backbone": "tiny-random/siglip", "cell": {"num_state_tokens": 4}},
        "data": {"train_file": str(train_file), "val_file": str(val_file), "num_workers": 0},
        "batch_size": 12, "max_steps": 6, "warmup_steps": 2, "save_every": 3, "log_every": 2,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["global_step"] == 6 and "recall@1" in result
    loaded = ReT2Encoder.from_pretrained(str(tmp_path / "cli-run" / "final"))
    assert loaded.config.num_state_tokens == 4 and loaded.model.spec.name == "siglip"
    # a second invocation resumes from the last checkpoint and has nothing left to do
    assert main(["train", "--config", str(path), "--max-steps", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] is True
    # a bad field is reported as one line naming it
    path.write_text(yaml.safe_dump({**config, "learning_rat": 1.0}))
    assert main(["train", "--config", str(path)]) == 2
    assert "learning_rat: unknown field for TrainingConfig" in capsys.readouterr().err
