"""Training configuration (YAML → dataclasses, see ``configs/train/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ret2vqa.config import ConfigError, at_least, from_yaml


@dataclass
class ModelInitConfig:
    """Where the encoder to train comes from: exactly one of the two sources.

    - ``from_pretrained``: continue training a ReT-2 checkpoint (hub id or directory);
    - ``backbone``: a new ReT-2 (random cell) on a pretrained CLIP / SigLIP backbone, e.g.
      ``openai/clip-vit-base-patch32``; ``tiny-random/clip`` (``siglip``, ``siglip2``) is
      a tiny random backbone for offline smoke runs and tests.

    ``cell`` overrides :class:`~retriever.ReT2Config` fields for new models
    (``num_state_tokens``, ``hidden_size``, ``text_layers``, ``freeze_backbone`` ...).
    """

    from_pretrained: str | None = None
    backbone: str | None = None
    revision: str | None = None
    cell: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [name for name in ("from_pretrained", "backbone") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(f"set exactly one of from_pretrained or backbone "
                              f"(got {', '.join(given) if given else 'none'})")
        if self.from_pretrained and self.cell:
            raise ConfigError("cell overrides apply to new models only (backbone), not to from_pretrained", "cell")


@dataclass
class DataConfig:
    """Training data.

    ``format: pairs`` reads jsonl rows ``{"query", "query_image", "passage",
    "passage_image", "entity_id", "instruction"?}`` (each side needs text or image).
    ``format: m2kr`` reads the ReT-M2KR layout: query rows ``{"data_id", "instruction",
    "question", "image_path", "passage_id", ...}`` in ``train_file`` and passage rows
    ``{"passage_id", "passage_text", "passage_image_path"}`` in ``passages_file``.
    Relative image paths are resolved against ``image_root`` (default: the jsonl's folder).
    """

    train_file: str = ""
    format: Literal["pairs", "m2kr"] = "pairs"
    passages_file: str | None = None
    image_root: str | None = None
    val_file: str | None = None
    val_passages_file: str | None = None
    max_train_samples: int | None = None
    max_val_samples: int | None = 1000
    check_images: bool = True
    strict: bool = False
    num_workers: int = 2

    def __post_init__(self) -> None:
        if not self.train_file:
            raise ConfigError("required", "train_file")
        if self.format == "m2kr" and not self.passages_file:
            raise ConfigError("required when data.format is m2kr", "passages_file")
        at_least(self, 0, "num_workers")


@dataclass
class TrainingConfig:
    """Contrastive training of ReT-2 with ``accelerate`` (see docs/retriever.md, "Training")."""

    output_dir: str
    model: ModelInitConfig
    data: DataConfig
    batch_size: int = 32  # per process; in-batch negatives are gathered across processes
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    warmup_steps: int = 100
    learning_rate: float = 1e-4  # cell, adapters, projection
    backbone_learning_rate: float = 1e-5  # backbone towers (ignored when frozen)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    temperature_init: float = 0.05
    learnable_temperature: bool = True
    gather_negatives: bool = True
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    seed: int = 42
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end (when val_file is set)
    resume: bool = True
    report_to: list[str] = field(default_factory=list)  # accelerate trackers, e.g. ["tensorboard"]

    def __post_init__(self) -> None:
        at_least(self, 1, "batch_size", "gradient_accumulation_steps", "max_steps", "save_every", "log_every",
                 "keep_checkpoints")
        at_least(self, 0, "warmup_steps", "eval_every")
        if not 0 < self.temperature_init < 1:
            raise ConfigError(f"must be in (0, 1), got {self.temperature_init}", "temperature_init")

    @classmethod
    def from_yaml(cls, path: str) -> "TrainingConfig":
        return from_yaml(cls, path)
