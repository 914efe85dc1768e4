"""Tiny, randomly initialised ReT-2 encoders built entirely offline.

Tests, benchmarks and ``ret2vqa demo --tiny`` need the real code paths without
downloading weights. These builders use the real ``transformers`` config classes
(``CLIPConfig``, ``SiglipConfig``, ``Siglip2Config``) at toy sizes, a character-level
tokenizer built with ``tokenizers`` and image processors constructed in code.
Their embeddings are meaningless until trained.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerFast

from .backbones import backbone_spec
from .configuration_ret2 import ReT2Config
from .encoder import ReT2Encoder
from .modeling_ret2 import ReT2Model
from .processing_ret2 import ReT2Processor

TINY_SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_char_tokenizer(model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII, with ``<s> ... </s>`` framing."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    chars = [chr(i) for i in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIAL_TOKENS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=model_max_length,
    )


def tiny_backbone_config(
    backbone: str = "clip", num_layers: int = 3, image_size: int = 32, max_text_length: int = 128, vocab_size: int = 99
) -> PretrainedConfig:
    """A toy dual-encoder config of the given family (3 blocks per tower, widths 32/48)."""
    from transformers import CLIPConfig, Siglip2Config, SiglipConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        max_position_embeddings=max_text_length,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=num_layers, num_attention_heads=4, patch_size=8)
    if backbone == "clip":
        return CLIPConfig(text_config=text, vision_config=dict(vision, image_size=image_size), projection_dim=16)
    # SigLIP compares pooled text (projected to projection_size) with pooled vision features.
    siglip_text = dict(text, projection_size=vision["hidden_size"])
    if backbone == "siglip":
        return SiglipConfig(text_config=siglip_text, vision_config=dict(vision, image_size=image_size))
    if backbone == "siglip2":
        return Siglip2Config(text_config=siglip_text, vision_config=dict(vision, num_patches=(image_size // 8) ** 2))
    backbone_spec(backbone)  # raises the standard "unsupported backbone" error
    raise AssertionError("unreachable")


def build_tiny_processor(backbone: str = "clip", image_size: int = 32, max_text_length: int = 128) -> ReT2Processor:
    """Char tokenizer + the family's image processor at ``image_size`` pixels."""
    tokenizer = build_char_tokenizer(max_text_length)
    if backbone == "clip":
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor  # PIL backend: no torchvision needed

        image_processor = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
    elif backbone == "siglip":
        from transformers import SiglipImageProcessorPil as SiglipImageProcessor

        image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    elif backbone == "siglip2":
        from transformers import Siglip2ImageProcessorPil as Siglip2ImageProcessor

        image_processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=(image_size // 8) ** 2)
    else:
        backbone_spec(backbone)
        raise AssertionError("unreachable")
    return ReT2Processor(tokenizer, image_processor, backbone, max_text_length)


TINY_CELL = dict(num_state_tokens=8, hidden_size=64, num_attention_heads=4, embedding_dim=32, dropout=0.0,
                 attention_dropout=0.0)


def build_tiny_model(backbone: str = "clip", seed: int = 0, **overrides: Any) -> ReT2Model:
    """A tiny random :class:`ReT2Model` (deterministic for a given ``seed``)."""
    settings = dict(TINY_CELL)
    settings.update(overrides)
    image_size = settings.pop("image_size", 32)
    max_text_length = settings.pop("max_text_length", 128)
    num_layers = settings.pop("num_layers", 3)
    vocab = len(TINY_SPECIAL_TOKENS) + 95
    config = ReT2Config(
        backbone_config=tiny_backbone_config(backbone, num_layers, image_size, max_text_length, vocab),
        backbone_name_or_path=f"tiny-random-{backbone}",
        max_text_length=max_text_length,
        **settings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReT2Model(config)


def build_tiny_encoder(backbone: str = "clip", seed: int = 0, device: str = "cpu", **overrides: Any) -> ReT2Encoder:
    """A tiny random :class:`ReT2Encoder` for tests and offline demos (its vectors mean nothing)."""
    model = build_tiny_model(backbone, seed=seed, **overrides)
    processor = build_tiny_processor(
        backbone, image_size=overrides.get("image_size", 32), max_text_length=model.config.max_text_length
    )
    return ReT2Encoder(model, processor, name_or_path=f"tiny-random-ret2-{backbone}", revision=f"seed{seed}",
                       device=device, dtype="float32")
