"""The generator's inputs and outputs: requests and results (passages are :class:`ret2vqa.passage.Passage`).

Kept free of torch/transformers imports so that callers (the pipeline, LangChain
adapters, evaluation scripts) can build requests and read results cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ret2vqa.passage import Passage

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

ImageInput = Union["Image.Image", str, Path, None]

__all__ = ["GenerationRequest", "GenerationResult", "ImageInput", "Passage"]


@dataclass
class GenerationRequest:
    """One question to answer: the image (PIL image, path or URL; ``None`` for text-only) and
    the retrieved passages in rank order (empty for a zero-shot answer)."""

    question: str
    image: ImageInput = None
    passages: Sequence[Any] = field(default_factory=list)


@dataclass
class GenerationResult:
    """The answer and how it was obtained.

    ``answer`` is the post-processed short answer; ``raw_text`` what the model decoded;
    ``prompt_tokens`` the exact number of input tokens (image tokens included);
    ``passages_used`` how many of the request's passages (the top ones, in order) made it
    into the prompt; ``truncated`` whether any passage was cut or dropped to fit the token
    budget; ``prompt`` the rendered prompt text (image placeholders not expanded);
    ``completion_tokens`` how many tokens the model generated.
    """

    answer: str
    raw_text: str
    prompt_tokens: int
    passages_used: int
    truncated: bool
    prompt: str = ""
    #: Tokens generated (end-of-turn token included, padding not).
    completion_tokens: int = 0
