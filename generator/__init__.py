"""Multimodal LLM answer generation through ``transformers`` image-text-to-text models.

Public API (``import generator``):

* :class:`GeneratorConfig`, :class:`PromptConfig` - configuration dataclasses (YAML-ready);
* :class:`MultimodalGenerator` - ``from_config`` / ``from_pretrained``, batched
  ``generate(requests)``, ``answer(question, image, passages)``;
* :class:`GenerationRequest`, :class:`GenerationResult`, :class:`Passage` - inputs/outputs;
* :class:`PromptBuilder`, :func:`build_prompt`, :class:`BuiltPrompt` - prompts within a token budget;
* :func:`postprocess_answer` - decoded text to a short answer;
* :class:`QuantizationUnavailableError` - 4/8-bit asked for where it cannot run.

(Tiny random generators for tests and ``demo --tiny`` are built by ``rag.tiny_models``.)

Heavy modules (torch, transformers) are imported on first use of a name that needs
them, so ``import generator`` stays cheap for command-line parsing.
"""

from __future__ import annotations

from ret2vqa.lazy import lazy_exports

from .config import GeneratorConfig, PromptConfig
from .postprocess import postprocess_answer
from .schema import GenerationRequest, GenerationResult, Passage

_LAZY = {
    "MultimodalGenerator": "generator.model",
    "PromptBuilder": "generator.prompt",
    "BuiltPrompt": "generator.prompt",
    "build_prompt": "generator.prompt",
    "QuantizationUnavailableError": "generator.loading",
}

__all__ = [
    "GeneratorConfig",
    "PromptConfig",
    "GenerationRequest",
    "GenerationResult",
    "Passage",
    "postprocess_answer",
    "MultimodalGenerator",
    "PromptBuilder",
    "BuiltPrompt",
    "build_prompt",
    "QuantizationUnavailableError",
]


__getattr__ = lazy_exports(__name__, _LAZY)
