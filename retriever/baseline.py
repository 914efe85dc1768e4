"""The zero-shot dual-encoder baseline: CLIP / SigLIP embeddings with the encoder interface of ReT-2.

Image-to-article retrieval with a frozen CLIP is the classic KB-VQA baseline (the
question is often ignored). :class:`DualEncoder` embeds an item with the backbone's
own projection heads: text → ``get_text_features``, image → ``get_image_features``,
both → the normalised sum of the two normalised vectors. It plugs in wherever a
:class:`~retriever.ReT2Encoder` does (``encoder.type: dual_encoder`` in a pipeline
config), which makes it the reference point for what ReT-2's training adds, and gives
a meaningful first run with public checkpoints only (``openai/clip-vit-base-patch32``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

from .backbones import backbone_spec
from .encoder import BaseEncoder


class DualEncoder(BaseEncoder):
    """Frozen CLIP / SigLIP as a retriever: one normalised vector per item, no training needed."""

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, name_or_path: str | None = None,
                 revision: str | None = None, device: Any = None, dtype: Any = None, image_workers: int = 4,
                 max_text_length: int | None = None):
        super().__init__(model, name_or_path, revision, device, dtype, image_workers)
        self.spec = backbone_spec(model.config)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_text_length = max_text_length or self.spec.max_text_positions(model.config)

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device: Any = None, dtype: Any = None,
                        **kwargs: Any) -> "DualEncoder":
        """Load a CLIP / SigLIP / SigLIP 2 checkpoint (hub id or local directory)."""
        from ret2vqa.hub import resolve_model

        local = resolve_model(name_or_path, revision, config_field="encoder.name_or_path")
        spec = backbone_spec(AutoConfig.from_pretrained(local))
        model = spec.model_cls().from_pretrained(local)
        encoder = cls(model, AutoTokenizer.from_pretrained(local), AutoImageProcessor.from_pretrained(local),
                      name_or_path=name_or_path, revision=revision, device=device, dtype=dtype, **kwargs)
        encoder._source_dir = Path(local)
        return encoder

    @property
    def embedding_dim(self) -> int:
        config = self.model.config
        dim = getattr(config, "projection_dim", None) or getattr(config.text_config, "projection_size", None)
        return int(dim) if dim else int(config.text_config.hidden_size)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str | None], images: list[Any], side: str = "document") -> torch.Tensor:
        # One model embeds both sides: ``side`` changes nothing here.
        out = torch.zeros((len(texts), self.embedding_dim), device=self.device, dtype=torch.float32)
        text_rows = [i for i, t in enumerate(texts) if t]
        image_rows = [i for i, im in enumerate(images) if im is not None]
        if text_rows:
            enc = self.tokenizer([texts[i] for i in text_rows], padding=self.spec.text_padding, truncation=True,
                                 max_length=self.max_text_length, return_tensors="pt").to(self.device)
            if not self.spec.pass_text_attention_mask:
                enc.pop("attention_mask", None)
            feats = _pooled(self.model.get_text_features(**enc))
            out[text_rows] += F.normalize(feats.float(), dim=-1)
        if image_rows:
            pixels = self.image_processor(images=[images[i] for i in image_rows], return_tensors="pt").to(self.device)
            pixels["pixel_values"] = pixels["pixel_values"].to(self.dtype)
            feats = _pooled(self.model.get_image_features(**pixels))
            out[image_rows] += F.normalize(feats.float(), dim=-1)
        return F.normalize(out, dim=-1).cpu()

    def __repr__(self) -> str:
        return (f"DualEncoder(name_or_path={self.name_or_path!r}, backbone={self.spec.name}, "
                f"dim={self.embedding_dim}, device={self.device}, dtype={self.dtype})")


def _pooled(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return output if torch.is_tensor(output) else output.pooler_output
