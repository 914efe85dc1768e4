"""The generator's inputs and outputs: passages, requests and results.

Kept free of torch/transformers imports so that callers (the pipeline, LangChain
adapters, evaluation scripts) can build requests and read results cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

ImageInput = Union["Image.Image", str, Path, None]


@dataclass
class Passage:
    """One retrieved passage: its title and text, plus the id/score the retriever gave it."""

    title: str = ""
    text: str = ""
    id: str | None = None
    score: float | None = None

    @classmethod
    def coerce(cls, obj: Any) -> Passage:
        """Accept a :class:`Passage`, a mapping with ``title``/``text`` (``passage``/``content`` too),
        or a LangChain-style document (``page_content`` + ``metadata['title']``)."""
        if isinstance(obj, Passage):
            return obj
        if isinstance(obj, str):
            return cls(text=obj)
        if isinstance(obj, Mapping):
            text = next((obj[k] for k in ("text", "passage", "content", "page_content") if obj.get(k) is not None), "")
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
            title = obj.get("title") or meta.get("title") or ""
            pid = obj.get("id", meta.get("id"))
            score = obj.get("score", meta.get("score"))
            return cls(title=str(title), text=str(text), id=None if pid is None else str(pid), score=score)
        if hasattr(obj, "page_content"):
            meta = getattr(obj, "metadata", None) or {}
            pid = getattr(obj, "id", None) or meta.get("id")
            return cls(
                title=str(meta.get("title") or ""),
                text=str(obj.page_content or ""),
                id=None if pid is None else str(pid),
                score=meta.get("score"),
            )
        if hasattr(obj, "text"):
            return cls(
                title=str(getattr(obj, "title", "") or ""),
                text=str(obj.text or ""),
                id=getattr(obj, "id", None),
                score=getattr(obj, "score", None),
            )
        raise TypeError(f"cannot use a {type(obj).__name__} as a passage: expected title/text fields")


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
    budget; ``prompt`` the rendered prompt text (image placeholders not expanded).
    """

    answer: str
    raw_text: str
    prompt_tokens: int
    passages_used: int
    truncated: bool
    prompt: str = ""
