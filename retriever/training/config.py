"""Training configuration (YAML → dataclasses, see ``configs/train/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ret2vqa.config import ConfigError, from_yaml


@dataclass
class ModelInitConfig:
    """Where the encoder to train comes from: exactly one of the three sources.

    - ``from_pretrained``: continue training a ReT-2 checkpoint (hub id or directory);
    - ``backbone``: a new ReT-2 (random cell) on a pretrained CLIP / SigLIP backbone;
    - ``tiny``: a tiny random backbone of this family (``clip``/``siglip``/``siglip2``),
      for offline smoke runs and tests.

    ``cell`` overrides :class:`~retriever.ReT2Config` fields for new models
    (``num_state_tokens``, ``hidden_size``, ``text_layers``, ``freeze_backbone`` ...).
    """

    from_pretrained: str | None = None
    backbone: str | None = None
    tiny: str | None = None
    revision: str | None = None
    cell: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [name for name in ("from_pretrained", "backbone", "tiny") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(
                "model: set exactly one of from_pretrained, backbone or tiny "
                f"(got {', '.join(given) if given else 'none'})"
            )


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
            raise ConfigError("data.train_file is required")
        if self.format == "m2kr" and not self.passages_file:
            raise ConfigError("data.passages_file is required when data.format is m2kr")


@dataclass
class TrainingConfig:
    """Contrastive training of ReT-2 with ``accelerate`` (see docs/training.md)."""

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
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.temperature_init < 1:
            raise ConfigError(f"temperature_init must be in (0, 1), got {self.temperature_init}")

    @classmethod
    def from_yaml(cls, path: str) -> "TrainingConfig":
        return from_yaml(cls, path)
