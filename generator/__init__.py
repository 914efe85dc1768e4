"""Multimodal LLM answer generation through ``transformers`` image-text-to-text models.

Public API (``import generator``): :class:`GeneratorConfig` / :class:`PromptConfig`
(configuration), :class:`GenerationRequest` / :class:`GenerationResult` / :class:`Passage`
(inputs and outputs), :func:`postprocess_answer` (decoded text to a short answer).
"""

from .config import GeneratorConfig, PromptConfig
from .postprocess import postprocess_answer
from .schema import GenerationRequest, GenerationResult, Passage

__all__ = ["GeneratorConfig", "PromptConfig", "GenerationRequest", "GenerationResult", "Passage", "postprocess_answer"]
