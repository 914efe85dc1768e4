"""Multimodal LLM answer generation through ``transformers`` image-text-to-text models.

Public API (``import generator``):

* :class:`GeneratorConfig`, :class:`PromptConfig` - configuration dataclasses (YAML-ready);
* :class:`GenerationRequest`, :class:`GenerationResult`, :class:`Passage` - inputs/outputs;
* :class:`PromptBuilder`, :func:`build_prompt`, :class:`BuiltPrompt` - prompts within a token budget;
* :func:`postprocess_answer` - decoded text to a short answer;
* :func:`build_tiny_processor`, ``TINY_FAMILIES`` - processors of tiny offline families;

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
    "PromptBuilder": "generator.prompt",
    "BuiltPrompt": "generator.prompt",
    "build_prompt": "generator.prompt",
    "build_tiny_processor": "generator.tiny",
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
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
