"""Generator configuration: which multimodal LLM to load, how, and how to prompt it.

Two dataclasses, both buildable from YAML through :mod:`ret2vqa.config` (unknown keys and
bad types fail with the dotted field name):

* :class:`PromptConfig` - the wording and layout of the prompt (instruction, context
  header, passage format) and how passages are cut to fit the token budget.
* :class:`GeneratorConfig` - the checkpoint (``model`` / ``revision``), how it is loaded
  (``dtype``, ``device_map``, 4/8-bit ``bitsandbytes`` quantization), decoding
  (greedy by default), batching and the prompt's token budget.

Values are checked in ``__post_init__`` so that a bad combination (both 4- and 8-bit,
a negative budget) is reported with the field's name before any model is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ret2vqa.config import ConfigError, at_least, from_dict, from_yaml


@dataclass
class PromptConfig:
    """How retrieved passages and the question are laid out in the user turn.

    The user message is, in this order: the image (when there is one), then
    ``context_header`` followed by one ``passage_template`` line per passage in rank
    order (omitted entirely when there are no passages: zero-shot), then
    ``question_template`` and ``instruction``. The model's own chat template wraps it.
    """

    #: Optional system turn. ``None`` keeps the model's default (e.g. Qwen's "You are a helpful assistant.").
    system_prompt: str | None = None
    #: Line that opens the context section; the section is left out when there are no passages.
    context_header: str = "Context:"
    #: One passage. Fields: ``{rank}`` (1-based position in the prompt), ``{title}``, ``{text}``.
    passage_template: str = "[{rank}] {title}: {text}"
    #: Used instead of ``passage_template`` when a passage has no title.
    untitled_passage_template: str = "[{rank}] {text}"
    #: Joins passages inside the context section.
    passage_separator: str = "\n"
    #: The question line. Field: ``{question}``.
    question_template: str = "Question: {question}"
    #: Short-answer instruction placed after the question.
    instruction: str = "Answer the question using a single word or short phrase."
    #: Appended to a passage whose text was cut to fit the token budget.
    truncation_marker: str = " ..."
    #: A passage that would keep fewer text tokens than this after truncation is dropped instead.
    min_passage_tokens: int = 16

    def __post_init__(self) -> None:
        at_least(self, 1, "min_passage_tokens")
        for name, required in (
            ("passage_template", ("{text}",)),
            ("untitled_passage_template", ("{text}",)),
            ("question_template", ("{question}",)),
        ):
            template = getattr(self, name)
            for placeholder in required:
                if placeholder not in template:
                    raise ConfigError(f"must contain {placeholder}, got {template!r}", name)
            try:
                template.format(rank=1, title="t", text="x", question="q")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"bad template {template!r} ({type(exc).__name__}: {exc}); "
                    "allowed fields are {rank}, {title}, {text}, {question}", name
                ) from exc


@dataclass
class GeneratorConfig:
    """Everything needed to load a ``transformers`` image-text-to-text model and answer with it."""

    #: Hub id (``Qwen/Qwen2.5-VL-7B-Instruct``) or local directory of the checkpoint.
    model: str = "HuggingFaceTB/SmolVLM-256M-Instruct"
    #: Hub revision (branch, tag or commit); ``None`` = the default branch.
    revision: str | None = None
    #: Weights dtype. ``auto``, as for the encoder (:mod:`ret2vqa.devices`): bfloat16 on a GPU that
    #: supports it (else float16), float32 on the CPU.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    #: ``accelerate`` device map: ``auto`` spreads a model over all GPUs (then CPU RAM, then
    #: ``offload_folder``), or ``cpu`` / ``cuda:0`` / an explicit {module: device} mapping.
    device_map: str | dict[str, Any] | None = "auto"
    #: Per-device memory caps for ``device_map: auto``, e.g. ``{0: 20GiB, 1: 20GiB, cpu: 60GiB}``.
    max_memory: dict[Any, str] | None = None
    #: Folder for weights that fit neither on GPUs nor in RAM (``device_map: auto``).
    offload_folder: str | None = None
    #: Load 4-bit NF4 weights through ``bitsandbytes`` (CUDA only).
    load_in_4bit: bool = False
    #: Load 8-bit LLM.int8() weights through ``bitsandbytes`` (CUDA only).
    load_in_8bit: bool = False
    #: When 4/8-bit is asked for but CUDA or bitsandbytes is missing: warn and load unquantized
    #: (``true``) or stop with an error (``false``).
    allow_quantization_fallback: bool = False
    #: 4-bit quantization type: ``nf4`` (QLoRA's) or ``fp4``.
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    #: Quantize the 4-bit quantization constants too (saves ~0.4 bit per parameter).
    bnb_4bit_use_double_quant: bool = True
    #: ``sdpa``, ``eager``, ``flash_attention_2``; ``None`` lets transformers choose.
    #: ``sdpa_unpadded`` (:mod:`generator.attention`): SDPA whose batched prefill runs each
    #: prompt unpadded with the causal fast path, on the cores torch's own threads leave idle
    #: (faster batches on CPU, same answers).
    attn_implementation: str | None = None
    #: Run code shipped with the checkpoint. Off by default: supported families need none.
    trust_remote_code: bool = False
    #: Jinja chat template replacing the processor's (for checkpoints that ship none).
    chat_template: str | None = None
    #: Extra keyword arguments for ``AutoProcessor.from_pretrained`` (e.g. ``{max_pixels: 1003520}``).
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Extra keyword arguments for ``AutoModelForImageTextToText.from_pretrained``.
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    #: Upper bound on generated tokens; short answers need few.
    max_new_tokens: int = 32
    #: Greedy decoding by default; ``true`` samples with ``temperature`` / ``top_p``.
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    #: Beam search width (1 = no beam search).
    num_beams: int = 1
    #: Seed set before sampling, for reproducible sampled answers.
    seed: int | None = None
    #: Requests per forward pass in :meth:`MultimodalGenerator.generate`.
    batch_size: int = 8
    #: Most tokens the whole prompt may take: chat template, image tokens as expanded by the
    #: processor, passages, question and instruction. Passages are cut (lowest-ranked first) to
    #: fit; the image and question never are. ``None`` = no limit.
    context_token_budget: int | None = 4096
    #: Most tokens the question may take in the prompt. A longer question is cut to this (and further
    #: when the question, instruction and image alone would exceed ``context_token_budget``), with a
    #: warning; ``long_question: error`` refuses it instead (``ret2vqa ask --strict``). Bounds the time
    #: and memory one request can cost whatever its length.
    max_question_tokens: int = 256
    #: What to do with a question over ``max_question_tokens``: ``truncate`` (warn) or ``error``.
    long_question: Literal["truncate", "error"] = "truncate"
    #: Shorten the decoded text to a short answer (see ``generator.postprocess``).
    postprocess: bool = True
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("a hub id or a local directory is required", "model")
        if self.load_in_4bit and self.load_in_8bit:
            raise ConfigError("load_in_4bit, load_in_8bit: choose one of 4-bit and 8-bit quantization, not both")
        at_least(self, 1, "max_new_tokens", "batch_size", "num_beams", "context_token_budget", "max_question_tokens")
        if self.do_sample and self.temperature <= 0:
            raise ConfigError(f"must be > 0 when do_sample is true, got {self.temperature}", "temperature")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.top_p}", "top_p")
        if isinstance(self.prompt, dict):  # direct construction with a plain mapping
            self.prompt = from_dict(PromptConfig, self.prompt, where="prompt", nested=True)

    @property
    def quantization(self) -> str | None:
        """``"4bit"``, ``"8bit"`` or ``None``."""
        return "4bit" if self.load_in_4bit else "8bit" if self.load_in_8bit else None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> GeneratorConfig:
        return from_dict(cls, data, where=where)

    @classmethod
    def from_yaml(cls, path: str | Path, section: str | None = None) -> GeneratorConfig:
        """Read a generator config from YAML (the whole file, or one top-level ``section``)."""
        return from_yaml(cls, path, section=section)
