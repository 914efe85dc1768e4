"""Multimodal LLM answer generation through ``transformers`` image-text-to-text models.

Public API (``import generator``):

* :class:`GeneratorConfig`, :class:`PromptConfig` - configuration dataclasses (YAML-ready);
* :class:`MultimodalGenerator` - ``from_config`` / ``from_pretrained``, batched
  ``generate(requests)``, ``answer(question, image, passages)``;
* :class:`GenerationRequest`, :class:`GenerationResult`, :class:`Passage` - inputs/outputs;
* :class:`PromptBuilder`, :func:`build_prompt`, :class:`BuiltPrompt` - prompts within a token budget;
* :func:`postprocess_answer` - decoded text to a short answer;
* :func:`build_tiny_generator`, :func:`save_tiny_checkpoint`, ``TINY_FAMILIES`` - tiny
  random offline generators for tests and demos;
* :class:`QuantizationUnavailableError` - 4/8-bit asked for where it cannot run.

Heavy modules (torch, transformers) are imported on first use of a name that needs
them, so ``import generator`` stays cheap for command-line parsing.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import GeneratorConfig, PromptConfig
from .postprocess import postprocess_answer
from .schema import GenerationRequest, GenerationResult, Passage

_LAZY = {
    "MultimodalGenerator": "generator.model",
    "PromptBuilder": "generator.prompt",
    "BuiltPrompt": "generator.prompt",
    "build_prompt": "generator.prompt",
    "QuantizationUnavailableError": "generator.loading",
    "build_tiny_generator": "generator.tiny",
    "build_tiny_model_and_processor": "generator.tiny",
    "build_tiny_processor": "generator.tiny",
    "save_tiny_checkpoint": "generator.tiny",
    "TINY_FAMILIES": "generator.tiny",
    "load_image": "generator.images",
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
    "build_tiny_generator",
    "build_tiny_model_and_processor",
    "build_tiny_processor",
    "save_tiny_checkpoint",
    "TINY_FAMILIES",
    "load_image",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
