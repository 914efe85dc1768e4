"""Contrastive training of ReT-2 with ``accelerate``.

One loop serves a laptop CPU and a multi-node GPU job (``accelerate launch -m
rag.cli train --config ...``): mixed precision, gradient accumulation, negatives
gathered across processes, cosine schedule with warm-up, periodic checkpoints
(``accelerator.save_state`` for the optimiser/scheduler/RNG plus a
``save_pretrained`` model and processor that load on their own), and resumption from
the last checkpoint: the data order of every epoch is a function of (seed, epoch), so
a resumed run skips exactly the batches it had already consumed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ret2vqa.errors import ConfigError
from ret2vqa.io import MalformedRows

from ..encoder import ReT2Encoder
from ..modeling_ret2 import PAIRED_SIDES, enable_activation_checkpointing
from ..processing_ret2 import ReT2Processor
from .config import ModelInitConfig, TrainingConfig
from .data import PairCollator, PairDataset, TrainingPair, epoch_order, read_m2kr, read_pairs
from .loss import ContrastiveLoss

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


def build_encoder(init: ModelInitConfig) -> ReT2Encoder:
    """The encoder to train from a checkpoint or backbone (on CPU; accelerate moves it).

    Tiny random backbones (``tiny-random/...``) are built by the composition root,
    :func:`rag.components.build_training_encoder`, which ``ret2vqa train`` uses.
    """
    if init.backbone:
        return ReT2Encoder.from_backbone(init.backbone, revision=init.revision, device="cpu", dtype="float32",
                                         **init.cell)
    return ReT2Encoder.from_pretrained(init.from_pretrained, revision=init.revision, device="cpu", dtype="float32")


def load_pairs(cfg: TrainingConfig, instruction: str, train: bool = True) -> tuple[list[TrainingPair], MalformedRows]:
    """Read (and validate) the training or validation pairs named in the config."""
    data = cfg.data
    errors = MalformedRows(strict=data.strict)
    path = data.train_file if train else data.val_file
    passages = data.passages_file if train else (data.val_passages_file or data.passages_file)
    if data.format == "pairs":
        rows = read_pairs(path, data.image_root, errors, data.check_images, default_instruction=instruction)
    else:
        rows = read_m2kr(path, passages, data.image_root, errors, data.check_images)
    limit = data.max_train_samples if train else data.max_val_samples
    pairs = []
    for pair in rows:
        if limit is not None and len(pairs) >= limit:
            break
        pairs.append(pair)
    if errors.count:
        logger.warning("%s: %s", path, errors.summary())
    return pairs, errors


@torch.inference_mode()
def retrieval_recall(encoder: ReT2Encoder, pairs: list[TrainingPair], ks: tuple[int, ...] = (1, 5, 10),
                     batch_size: int = 64) -> dict[str, float]:
    """Recall@k of each query's positive among the distinct documents of ``pairs``.

    Documents are de-duplicated by entity; a hit is any document of the query's entity.
    """
    doc_index: dict[str, int] = {}
    docs = []
    for p in pairs:
        if p.entity not in doc_index:
            doc_index[p.entity] = len(docs)
            docs.append({"text": p.doc_text, "image": p.doc_image})
    d = encoder.encode(docs, batch_size=batch_size, side="document")
    q = encoder.encode([{"text": p.query_text, "image": p.query_image} for p in pairs], batch_size=batch_size,
                       side="query")
    scores = encoder.score(q, d)
    gold = np.array([doc_index[p.entity] for p in pairs])
    ranking = np.argsort(-scores, axis=1)
    ranks = np.argmax(ranking == gold[:, None], axis=1)
    return {f"recall@{k}": float(np.mean(ranks < k)) for k in ks}


class Trainer:
    """Runs :class:`TrainingConfig`; ``Trainer(cfg).train()`` returns the final metrics."""

    def __init__(self, cfg: TrainingConfig, encoder: ReT2Encoder | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with=cfg.report_to or None,
            project_dir=str(self.output_dir),
        )
        set_seed(cfg.seed)
        self.encoder = encoder or build_encoder(cfg.model)
        self.processor: ReT2Processor = self.encoder.processor
        self.model = self.encoder.model.float().train()
        if cfg.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
        self.loss_fn = ContrastiveLoss(cfg.temperature_init, cfg.learnable_temperature, cfg.gather_negatives)
        pairs, self.malformed = load_pairs(cfg, self.model.config.query_instruction, train=True)
        self.dataset = PairDataset(pairs)
        self.val_pairs = load_pairs(cfg, self.model.config.query_instruction, train=False)[0] if cfg.data.val_file \
            else []
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.learning_rate)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.max_steps)
        self.model, self.loss_fn, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.model, self.loss_fn, self.optimizer, self.scheduler
        )
        self.global_step = 0
        self.epoch = 0
        self.batches_done_in_epoch = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ setup
    def _param_groups(self) -> list[dict[str, Any]]:
        backbone, cell_decay, cell_no_decay = [], [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith(("text_model.", "vision_model.")):
                backbone.append(param)
            elif param.ndim < 2 or name.endswith("query_hidden_states"):  # biases, norms, initial state
                cell_no_decay.append(param)
            else:
                cell_decay.append(param)
        groups = [
            {"params": cell_decay, "lr": self.cfg.learning_rate, "weight_decay": self.cfg.weight_decay},
            {"params": cell_no_decay + list(self.loss_fn.parameters()), "lr": self.cfg.learning_rate,
             "weight_decay": 0.0},
        ]
        if backbone:
            groups.append({"params": backbone, "lr": self.cfg.backbone_learning_rate,
                           "weight_decay": self.cfg.weight_decay})
        return groups

    def _dataloader(self, epoch: int) -> DataLoader:
        order = epoch_order(len(self.dataset), self.cfg.seed, epoch)
        loader = DataLoader(
            Subset(self.dataset, order),
            batch_size=self.cfg.batch_size,
            shuffle=False,
            drop_last=True,  # equal batch sizes on every process for gathering
            collate_fn=PairCollator(self.processor),
            num_workers=self.cfg.data.num_workers,
        )
        if len(loader) == 0:
            raise ConfigError(
                f"{self.cfg.batch_size} is larger than the {len(self.dataset)} training pairs", "batch_size"
            )
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoints(self) -> list[Path]:
        root = self.output_dir / "checkpoints"
        found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self) -> Path:
        path = self.output_dir / "checkpoints" / f"step-{self.global_step}"
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path / "state"))
        if self.accelerator.is_main_process:
            self._save_model(path / "model")
            state = {"global_step": self.global_step, "epoch": self.epoch,
                     "batches_done_in_epoch": self.batches_done_in_epoch, "config": _jsonable(self.cfg)}
            (path / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")  # written last: marks done
            for old in self._checkpoints()[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def _save_model(self, directory: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(directory)
        self.processor.save_pretrained(directory)

    def maybe_resume(self) -> bool:
        if not self.cfg.resume:
            return False
        checkpoints = self._checkpoints()
        if not checkpoints:
            return False
        last = checkpoints[-1]
        state = json.loads((last / STATE_FILE).read_text(encoding="utf-8"))
        self.accelerator.load_state(str(last / "state"))
        self.global_step = state["global_step"]
        self.epoch = state["epoch"]
        self.batches_done_in_epoch = state["batches_done_in_epoch"]
        logger.info("resumed from %s (step %d)", last, self.global_step)
        return True

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.maybe_resume()
        if cfg.report_to:
            acc.init_trackers("ret2", config=_jsonable(cfg))
        bar = tqdm(total=cfg.max_steps, initial=self.global_step, desc="training", unit="step",
                   disable=not acc.is_local_main_process)
        log_path = self.output_dir / "train_log.jsonl"
        started = time.perf_counter()
        running: list[dict[str, float]] = []
        while self.global_step < cfg.max_steps:
            loader = self._dataloader(self.epoch)
            skip = self.batches_done_in_epoch
            batches = acc.skip_first_batches(loader, skip) if skip else loader
            for batch in batches:
                with acc.accumulate(self.model):
                    q, d = self._embed_pairs(batch["inputs"])
                    loss, stats = self.loss_fn(q, d, batch["labels"])
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.batches_done_in_epoch += 1
                running.append(stats)
                if not acc.sync_gradients:
                    continue
                self.global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", tau=f"{stats['temperature']:.3f}")
                if self.global_step % cfg.log_every == 0 or self.global_step == cfg.max_steps:
                    record = {"step": self.global_step, "epoch": self.epoch,
                              "lr": self.scheduler.get_last_lr()[0],
                              **{k: float(np.mean([r[k] for r in running])) for k in running[0]}}
                    running = []
                    self.history.append(record)
                    if acc.is_main_process:
                        with open(log_path, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(record) + "\n")
                    acc.log(record, step=self.global_step)
                if cfg.eval_every and self.global_step % cfg.eval_every == 0 and self.val_pairs:
                    self._evaluate()
                if self.global_step % cfg.save_every == 0 or self.global_step == cfg.max_steps:
                    self.save_checkpoint()
                if self.global_step >= cfg.max_steps:
                    break
            else:
                self.epoch += 1
                self.batches_done_in_epoch = 0
        bar.close()
        final = {"global_step": self.global_step, "resumed": resumed,
                 "seconds": round(time.perf_counter() - started, 1), "malformed_rows": self.malformed.count}
        if self.val_pairs:
            final.update(self._evaluate())
        if acc.is_main_process:
            self._save_model(self.output_dir / "final")
            (self.output_dir / "final" / "training_summary.json").write_text(
                json.dumps({**final, "history_tail": self.history[-5:]}, indent=2), encoding="utf-8")
        acc.end_training()
        return final

    def _embed_pairs(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Query and document embeddings of a collated batch (queries first, then documents).

        One forward call either way (what a distributed wrapper expects per step): with
        separate query and document cells, each half goes through its own side inside it.
        """
        if self.accelerator.unwrap_model(self.model).config.share_query_passage_models:
            return self.model(**inputs).embeddings.chunk(2, dim=0)
        return self.model(**inputs, side=PAIRED_SIDES).embeddings.chunk(2, dim=0)

    def _evaluate(self) -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        encoder = ReT2Encoder(model, self.processor, device=self.accelerator.device, dtype=model.dtype)
        metrics = retrieval_recall(encoder, self.val_pairs)
        model.train()
        self.accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=self.global_step)
        logger.info("step %d validation: %s", self.global_step, metrics)
        return metrics


def train(cfg: TrainingConfig, encoder: ReT2Encoder | None = None) -> dict[str, Any]:
    """Train ReT-2 as configured (from ``encoder`` when given); returns the final metrics (also in ``output_dir/final``)."""
    return Trainer(cfg, encoder).train()


def _jsonable(cfg: TrainingConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg), default=str))

