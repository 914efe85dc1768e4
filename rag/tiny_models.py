"""Tiny randomly initialised models, built offline from real ``transformers`` config classes.

Not part of any package's public API: this module exists for the tests, the benchmarks'
smoke settings and ``ret2vqa demo --tiny``, which need the real code paths without
downloading weights. Every model is the real architecture at toy sizes; their outputs
are meaningless but deterministic for a given seed.

In configs they are named ``tiny-random/<family>`` (:data:`ret2vqa.hub.TINY_PREFIX`), with
the seed as revision (``seed0`` by default), and the composition root
(:mod:`rag.components`) builds them through this module:

* encoders: ``tiny-random/clip``, ``tiny-random/siglip``, ``tiny-random/siglip2``, as a
  ReT-2 encoder (``type: ret2``, :func:`build_tiny_encoder`) or the zero-shot dual encoder
  (``type: dual_encoder``, :func:`build_tiny_dual_encoder`): the family's real config class
  (``CLIPConfig``, ``SiglipConfig``, ``Siglip2Config``) with 3 blocks per tower, a
  tokenizer on CLIP's BPE merges (as the generators') and the family's image processor;
* generators: ``tiny-random/qwen2_vl``, ``qwen2_5_vl``, ``idefics3``, ``smolvlm`` (needs
  ``num2words``), ``llava``, ``llava_next``, ``llava_onevision``
  (:func:`build_tiny_generator`): the real ``*ForConditionalGeneration`` model, processor
  with its placeholder expansion and a chat template in the family's style, two layers of
  width 32 and a BPE tokenizer on the first 16,000 merges of CLIP's (``rag/tiny_bpe_merges.txt``),
  so that prompts are about as long as a real tokenizer makes them.
  :func:`save_tiny_generator_checkpoint` writes one as a checkpoint directory that loads
  through the ordinary ``AutoProcessor`` / ``AutoModelForImageTextToText`` path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerFast

from generator.compat import image_only_processor_class
from ret2vqa.config import ConfigError
from ret2vqa.hub import TINY_PREFIX
from retriever import ReT2Config, ReT2Encoder, ReT2Model, ReT2Processor
from retriever.backbones import backbone_spec
from retriever.baseline import DualEncoder

# ---------------------------------------------------------------------------------------
# Tokenizers (encoders and generators)
# ---------------------------------------------------------------------------------------

#: The tiny models' BPE merges: the first 16,000 merges of OpenAI CLIP's vocabulary (MIT
#: licence: rag/tiny_bpe_merges.LICENSE.txt) made of printable ASCII pieces, in CLIP's order
#: (most frequent first), less the few that complete words a random answer should not show
#: (listed in the file's first line). A real tokenizer's merges give prompts a real tokenizer's
#: length (about 3.7 characters per token on the demo passages; Qwen2's and Llama's tokenizers
#: make about 4): attention cost, which grows with the square of the prompt, is then what it
#: would be with real models.
_MERGES_FILE = Path(__file__).with_name("tiny_bpe_merges.txt")
#: Characters of the base vocabulary (text is lowercased, and split at whitespace, first).
_ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()[]{}-_/*+=<>|&%$#@~^`\\")


@functools.cache
def _tokenizer_json(specials: tuple[str, ...], prefix: str | None = None, suffix: str | None = None) -> str:
    """A BPE tokenizer on CLIP's merges (``_MERGES_FILE``: lowercased text split at whitespace,
    word-final ``</w>`` pieces) with ``specials`` first in its vocabulary, framing each text
    with ``prefix`` / ``suffix`` when given."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    lines = _MERGES_FILE.read_text(encoding="utf-8").splitlines()[1:]  # the first line is the header
    merges = [tuple(line.split(" ")) for line in lines if line]
    vocab: dict[str, int] = {}
    for token in [*specials, *_ALPHABET, *(c + "</w>" for c in _ALPHABET), *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    unk = "<unk>" if "<unk>" in specials else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", unk_token=unk, fuse_unk=True))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.add_special_tokens(list(specials))
    if prefix or suffix:
        framing = [t for t in (prefix, suffix) if t]
        single = " ".join(t for t in (prefix, "$A", suffix) if t)
        pair = " ".join(t for t in (prefix, "$A", suffix, prefix, "$B", suffix) if t)
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in framing]
        )
    return tok.to_str()


# ---------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------

TINY_SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_encoder_tokenizer(model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """The tiny encoders' tokenizer: CLIP's BPE merges (as the generators'), with ``<s> ... </s>`` framing."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(_tokenizer_json(tuple(TINY_SPECIAL_TOKENS), "<s>", "</s>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=model_max_length,
    )


def tiny_backbone_config(
    backbone: str = "clip", num_layers: int = 3, image_size: int = 32, max_text_length: int = 128,
    vocab_size: int | None = None,
) -> PretrainedConfig:
    """A toy dual-encoder config of the given family (3 blocks per tower, widths 32/48)."""
    from transformers import CLIPConfig, Siglip2Config, SiglipConfig

    text = dict(
        vocab_size=vocab_size or len(build_encoder_tokenizer()),
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


def build_tiny_ret2_processor(backbone: str = "clip", image_size: int = 32, max_text_length: int = 128) -> ReT2Processor:
    """The BPE tokenizer + the family's image processor at ``image_size`` pixels."""
    tokenizer = build_encoder_tokenizer(max_text_length)
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


def build_tiny_ret2_model(backbone: str = "clip", seed: int = 0, **overrides: Any) -> ReT2Model:
    """A tiny random :class:`ReT2Model` (deterministic for a given ``seed``)."""
    settings = dict(TINY_CELL)
    settings.update(overrides)
    image_size = settings.pop("image_size", 32)
    max_text_length = settings.pop("max_text_length", 128)
    num_layers = settings.pop("num_layers", 3)
    config = ReT2Config(
        backbone_config=tiny_backbone_config(backbone, num_layers, image_size, max_text_length),
        backbone_name_or_path=f"tiny-random-{backbone}",
        max_text_length=max_text_length,
        **settings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReT2Model(config)


#: Tiny encoder families that are a backbone with cell options: ``tiny-random/clip-late`` is the
#: layout of ReT-1's released checkpoints (late interaction, separate query and document cells).
TINY_ENCODER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "clip-late": ("clip", {"late_interaction": True, "share_query_passage_models": False}),
}


def build_tiny_encoder(backbone: str = "clip", seed: int = 0, device: str = "cpu", **overrides: Any) -> ReT2Encoder:
    """A tiny random :class:`ReT2Encoder` for tests and offline demos (its vectors mean nothing).

    ``backbone`` is a backbone family (``clip``, ``siglip``, ``siglip2``) or one of
    :data:`TINY_ENCODER_VARIANTS` (e.g. ``clip-late``).
    """
    family = backbone
    if backbone in TINY_ENCODER_VARIANTS:
        backbone, options = TINY_ENCODER_VARIANTS[backbone]
        overrides = {**options, **overrides}
    model = build_tiny_ret2_model(backbone, seed=seed, **overrides)
    processor = build_tiny_ret2_processor(
        backbone, image_size=overrides.get("image_size", 32), max_text_length=model.config.max_text_length
    )
    return ReT2Encoder(model, processor, name_or_path=f"{TINY_PREFIX}{family}", revision=f"seed{seed}",
                       device=device, dtype="float32")


def build_tiny_dual_encoder(backbone: str = "clip", seed: int = 0, device: str = "cpu") -> DualEncoder:
    """A tiny random dual encoder (tests, offline runs); its vectors mean nothing."""
    config = tiny_backbone_config(backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = backbone_spec(config).build(config)
    processor = build_tiny_ret2_processor(backbone)
    return DualEncoder(model, processor.tokenizer, processor.image_processor,
                       name_or_path=f"{TINY_PREFIX}{backbone}", revision=f"seed{seed}", device=device,
                       dtype="float32", max_text_length=processor.max_text_length)


# ---------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------

_QWEN_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
_LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
_LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'][0]['text'] + '</s>' }}{% endif %}"
    "{% endfor %}"
)
_ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}"
    "{{ '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_IDEFICS_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]
_SMOLVLM_SPECIALS = ["<|im_start|>", "<|im_end|>", "<pad>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", "<video>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]
_LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
_ONEVISION_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

WIDTH = 32  # hidden size of every tiny tower


@dataclass(frozen=True)
class TinyFamily:
    """What a tiny family needs: its special tokens, which ones play which role, how to build it."""

    name: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str  # end of the assistant's turn: generation stops there
    pad: str
    chat_template: str
    add_bos: bool  # whether the tokenizer itself prepends ``bos`` (Llama-style)
    build: Callable[[Any, str], tuple[Any, Any]]  # (tokenizer, chat_template) -> (model config, processor)
    needs: tuple[str, ...] = ()  # extra importable modules the family's processor requires


def _text_config(tok: Any, family: TinyFamily, model_type: str, **extra: Any) -> dict[str, Any]:
    cfg = dict(
        model_type=model_type,
        vocab_size=len(tok),
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=0.1,
        bos_token_id=tok.convert_tokens_to_ids(family.bos) if family.bos else None,
        eos_token_id=tok.convert_tokens_to_ids(family.eos),
        pad_token_id=tok.convert_tokens_to_ids(family.pad),
        tie_word_embeddings=False,
    )
    cfg.update(extra)
    return cfg


def _qwen_build(version: str) -> Callable[[Any, str], tuple[Any, Any]]:
    def build(tok: Any, chat_template: str) -> tuple[Any, Any]:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        ids = tok.convert_tokens_to_ids
        family = _GENERATORS[version]
        text = _text_config(
            tok,
            family,
            f"{version}_text",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        )
        if version == "qwen2_vl":
            from transformers import Qwen2VLConfig as Config
            from transformers import Qwen2VLProcessor as Processor

            vision = dict(depth=2, embed_dim=WIDTH, hidden_size=WIDTH, num_heads=4, mlp_ratio=2, patch_size=4,
                          spatial_merge_size=2, temporal_patch_size=2, initializer_range=0.1)
        else:
            from transformers import Qwen2_5_VLConfig as Config
            from transformers import Qwen2_5_VLProcessor as Processor

            vision = dict(depth=2, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_heads=4, out_hidden_size=WIDTH,
                          patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                          fullatt_block_indexes=[1], initializer_range=0.1)
        config = Config(
            text_config=text,
            vision_config=vision,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
        # 8x8-pixel merged patches, at most 32x32 pixels: 1 to 16 image tokens depending on the image's shape.
        image_processor = Qwen2VLImageProcessorPil(min_pixels=8 * 8, max_pixels=32 * 32, patch_size=4, merge_size=2,
                                                   temporal_patch_size=2)
        processor = image_only_processor_class(Processor)(image_processor=image_processor, tokenizer=tok,
                                                          chat_template=chat_template)
        return config, processor

    return build


def _idefics_build(version: str) -> Callable[[Any, str], tuple[Any, Any]]:
    def build(tok: Any, chat_template: str) -> tuple[Any, Any]:
        family = _GENERATORS[version]
        if version == "idefics3":
            from transformers import Idefics3Config as Config
            from transformers import Idefics3Processor as Processor
            from transformers.models.idefics3.image_processing_pil_idefics3 import (
                Idefics3ImageProcessorPil as ImageProcessor,
            )
        else:
            from transformers import SmolVLMConfig as Config
            from transformers import SmolVLMProcessor as Processor
            from transformers.models.smolvlm.image_processing_pil_smolvlm import (
                SmolVLMImageProcessorPil as ImageProcessor,
            )
        # 16-pixel tiles of 4x4 patches, pixel-shuffled by 2: 4 image tokens per tile; images up to 32
        # pixels are split into at most 2x2 tiles plus the global view.
        config = Config(
            text_config=_text_config(tok, family, "llama"),
            vision_config=dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2, num_attention_heads=4,
                               image_size=16, patch_size=4, initializer_range=0.1),
            scale_factor=2,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
        image_processor = ImageProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 16},
                                         do_image_splitting=True)
        processor = image_only_processor_class(Processor)(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                                          chat_template=chat_template)
        return config, processor

    return build


def _llava_build(version: str) -> Callable[[Any, str], tuple[Any, Any]]:
    def build(tok: Any, chat_template: str) -> tuple[Any, Any]:
        family = _GENERATORS[version]
        image_id = tok.convert_tokens_to_ids("<image>")
        grid = [[16, 32], [32, 16], [32, 32]]
        clip = dict(model_type="clip_vision_model", hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
                    num_attention_heads=4, image_size=16, patch_size=4, projection_dim=WIDTH, initializer_range=0.1)
        if version == "llava":
            from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

            config = LlavaConfig(vision_config=clip, text_config=_text_config(tok, family, "llama"),
                                 image_token_index=image_id, image_seq_length=16)
            image_processor = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
            processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=4,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                       chat_template=chat_template)
        elif version == "llava_next":
            from transformers import LlavaNextConfig, LlavaNextProcessor
            from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

            config = LlavaNextConfig(vision_config=clip, text_config=_text_config(tok, family, "mistral"),
                                     image_token_index=image_id, image_grid_pinpoints=grid, image_seq_length=16)
            image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                                                         image_grid_pinpoints=grid)
            processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=4,
                                           vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                           chat_template=chat_template)
        else:
            from transformers import LlavaOnevisionConfig, LlavaOnevisionProcessor
            from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
                LlavaOnevisionImageProcessorPil,
            )

            siglip = dict(clip, model_type="siglip_vision_model")
            siglip.pop("projection_dim")
            grid = [[16, 16], [16, 32], [32, 16], [32, 32]]
            config = LlavaOnevisionConfig(vision_config=siglip, text_config=_text_config(tok, family, "qwen2"),
                                          image_token_index=image_id, video_token_index=tok.convert_tokens_to_ids("<video>"),
                                          image_grid_pinpoints=grid, vision_feature_select_strategy="full",
                                          vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9")
            image_processor = LlavaOnevisionImageProcessorPil(size={"height": 16, "width": 16}, image_grid_pinpoints=grid)
            processor = image_only_processor_class(LlavaOnevisionProcessor)(
                image_processor=image_processor, tokenizer=tok, num_image_tokens=16,
                vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9", chat_template=chat_template)
        return config, processor

    return build


_GENERATORS: dict[str, TinyFamily] = {
    "qwen2_vl": TinyFamily("qwen2_vl", tuple(_QWEN_SPECIALS), None, "<|im_end|>", "<|endoftext|>", _QWEN_TEMPLATE, False,
                           _qwen_build("qwen2_vl")),
    "qwen2_5_vl": TinyFamily("qwen2_5_vl", tuple(_QWEN_SPECIALS), None, "<|im_end|>", "<|endoftext|>", _QWEN_TEMPLATE,
                             False, _qwen_build("qwen2_5_vl")),
    "idefics3": TinyFamily("idefics3", tuple(_IDEFICS_SPECIALS), "<|begin_of_text|>", "<end_of_utterance>", "<pad>",
                           _IDEFICS3_TEMPLATE, True, _idefics_build("idefics3")),
    "smolvlm": TinyFamily("smolvlm", tuple(_SMOLVLM_SPECIALS), "<|im_start|>", "<end_of_utterance>", "<pad>",
                          _SMOLVLM_TEMPLATE, False, _idefics_build("smolvlm"), needs=("num2words",)),
    "llava": TinyFamily("llava", tuple(_LLAMA_SPECIALS), "<s>", "</s>", "<pad>", _LLAVA_TEMPLATE, True,
                        _llava_build("llava")),
    "llava_next": TinyFamily("llava_next", tuple(_LLAMA_SPECIALS), "<s>", "</s>", "<pad>", _LLAVA_NEXT_TEMPLATE, True,
                             _llava_build("llava_next")),
    "llava_onevision": TinyFamily("llava_onevision", tuple(_ONEVISION_SPECIALS), None, "<|im_end|>", "<|endoftext|>",
                                  _ONEVISION_TEMPLATE, False, _llava_build("llava_onevision")),
}
GENERATOR_FAMILIES: tuple[str, ...] = tuple(_GENERATORS)


def missing_requirements(family: str) -> list[str]:
    """Modules the family's processor needs that are not installed (e.g. ``num2words`` for SmolVLM)."""
    import importlib.util

    return [name for name in _family(family).needs if importlib.util.find_spec(name) is None]


def _tokenizer(family: str) -> Any:
    """A BPE tokenizer on CLIP's merges (``_MERGES_FILE``: lowercased, word-final ``</w>`` pieces)
    with the family's special tokens, the same on every machine."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = _family(family)
    backend = Tokenizer.from_str(_tokenizer_json(spec.specials, spec.bos if spec.add_bos else None))
    named = {"eos_token": spec.eos, "pad_token": spec.pad}
    if spec.bos:
        named["bos_token"] = spec.bos
    if "<unk>" in spec.specials:
        named["unk_token"] = "<unk>"
    extra = [t for t in spec.specials if t not in named.values()]
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, extra_special_tokens=extra, **named)
    tok.padding_side = "left"
    tok.chat_template = spec.chat_template
    return tok


def _family(family: str) -> TinyFamily:
    if family not in _GENERATORS:
        raise ConfigError(f"tiny generator family: unknown {family!r} (known: {', '.join(GENERATOR_FAMILIES)})")
    return _GENERATORS[family]


def build_tiny_generator_processor(family: str = "qwen2_vl") -> Any:
    """The family's processor alone (tokenizer, image processor, chat template): enough to build prompts."""
    spec = _family(family)
    _check_requirements(family)
    return spec.build(_tokenizer(family), spec.chat_template)[1]


def _check_requirements(family: str) -> None:
    missing = missing_requirements(family)
    if missing:
        raise ImportError(f"the {family} processor needs {', '.join(missing)}: pip install {' '.join(missing)}")


def build_tiny_generator_model(family: str = "qwen2_vl", seed: int = 0) -> tuple[Any, Any]:
    """The family's model (random weights from ``seed``, eval mode, float32) and processor.

    The global torch RNG is left as it was.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    spec = _family(family)
    _check_requirements(family)
    tok = _tokenizer(family)
    config, processor = spec.build(tok, spec.chat_template)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id = tok.convert_tokens_to_ids(spec.eos)
    gen.pad_token_id = tok.convert_tokens_to_ids(spec.pad)
    if spec.bos:
        gen.bos_token_id = tok.convert_tokens_to_ids(spec.bos)
    return model, processor


def build_tiny_generator(family: str = "qwen2_vl", seed: int = 0, config: Any = None, **overrides: Any):
    """A ready :class:`~generator.MultimodalGenerator` around a tiny random model of ``family``.

    ``seed`` initialises the weights. ``config`` (a :class:`~generator.GeneratorConfig`) or
    ``overrides`` (its fields) set decoding, batching and prompt options; the default
    answers greedily in at most 8 new tokens on CPU. (A sampling seed is the config's
    ``seed`` field: pass it inside ``config``.)
    """
    from generator import GeneratorConfig, MultimodalGenerator

    if config is None:
        settings: dict[str, Any] = {"model": f"{TINY_PREFIX}{family}", "dtype": "float32", "device_map": "cpu",
                                    "max_new_tokens": 8}
        settings.update(overrides)
        config = GeneratorConfig(**settings)
    elif overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)
    model, processor = build_tiny_generator_model(family, seed)
    return MultimodalGenerator(model, processor, config)


def save_tiny_generator_checkpoint(family: str, directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny ``family`` model and processor to ``directory`` (``save_pretrained`` format).

    The directory then loads like any checkpoint: ``GeneratorConfig(model=str(directory))``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_generator_model(family, seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
