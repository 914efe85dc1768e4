"""Vision-language backbones ReT-2 can sit on, and how to reach their towers.

ReT-2 needs the per-layer hidden states of a dual-encoder's text tower and vision
tower. CLIP, SigLIP and SigLIP 2 in ``transformers`` share the layout that matters
(``model.text_model`` / ``model.vision_model``, blocks in ``.encoder.layers``, hidden
states via ``output_hidden_states``) but differ in details: SigLIP was trained with
texts padded to a fixed length and no attention mask, SigLIP 2 (NaFlex) feeds the
vision tower patch masks and spatial shapes. A :class:`BackboneSpec` captures those
differences in one place so the model code stays generic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import PretrainedConfig

from ret2vqa.errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """How ReT-2 drives one family of dual-encoder backbones."""

    name: str
    model_class: str
    text_padding: str  # "longest" or "max_length"
    pass_text_attention_mask: bool  # SigLIP was trained without a text attention mask
    extra_vision_inputs: tuple[str, ...] = ()
    image_key_mask_input: str | None = None  # vision input that masks padded patches (SigLIP 2)

    def text_config(self, config: PretrainedConfig) -> PretrainedConfig:
        return config.text_config

    def vision_config(self, config: PretrainedConfig) -> PretrainedConfig:
        return config.vision_config

    def num_text_layers(self, config: PretrainedConfig) -> int:
        return int(self.text_config(config).num_hidden_layers)

    def num_vision_layers(self, config: PretrainedConfig) -> int:
        return int(self.vision_config(config).num_hidden_layers)

    def text_width(self, config: PretrainedConfig) -> int:
        return int(self.text_config(config).hidden_size)

    def vision_width(self, config: PretrainedConfig) -> int:
        return int(self.vision_config(config).hidden_size)

    def max_text_positions(self, config: PretrainedConfig) -> int:
        return int(self.text_config(config).max_position_embeddings)

    def model_cls(self) -> type:
        import transformers

        return getattr(transformers, self.model_class)

    def build(self, config: PretrainedConfig) -> nn.Module:
        """A randomly initialised dual encoder from ``config``."""
        return self.model_cls()._from_config(config)

    def towers(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        return model.text_model, model.vision_model


_SPECS = {
    "clip": BackboneSpec("clip", "CLIPModel", text_padding="longest", pass_text_attention_mask=True),
    "siglip": BackboneSpec("siglip", "SiglipModel", text_padding="max_length", pass_text_attention_mask=False),
    "siglip2": BackboneSpec(
        "siglip2",
        "Siglip2Model",
        text_padding="max_length",
        pass_text_attention_mask=False,
        extra_vision_inputs=("pixel_attention_mask", "spatial_shapes"),
        image_key_mask_input="pixel_attention_mask",
    ),
}

SUPPORTED_BACKBONES = tuple(_SPECS)


def backbone_spec(config: PretrainedConfig | dict[str, Any] | str) -> BackboneSpec:
    """The :class:`BackboneSpec` for a backbone config (or its ``model_type``)."""
    if isinstance(config, str):
        model_type = config
    elif isinstance(config, dict):
        model_type = config.get("model_type", "")
    else:
        model_type = getattr(config, "model_type", "")
    try:
        return _SPECS[model_type]
    except KeyError:
        raise ConfigError(
            f"unsupported backbone model_type {model_type!r}: ReT-2 supports {', '.join(SUPPORTED_BACKBONES)} "
            "dual encoders (CLIPModel, SiglipModel, Siglip2Model)"
        ) from None


def prune_tower(tower: nn.Module, keep_layers: int) -> None:
    """Keep only the first ``keep_layers`` blocks of a tower (later ones cannot reach the cell)."""
    layers = tower.encoder.layers
    if keep_layers < len(layers):
        tower.encoder.layers = nn.ModuleList(list(layers)[:keep_layers])
