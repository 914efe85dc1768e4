"""What a LangChain caller may hand the retriever as a query, turned into one :class:`~rag.pipeline.Query`.

LangChain code passes queries in several shapes, and a multimodal retriever must take the
image from each of them rather than only from our own dict:

* a string: a text query;
* ``{"question": ..., "image": ...}`` (``query`` / ``text`` are accepted for the question);
* ``(question, image)``;
* a message (``HumanMessage``), a list of messages or a prompt value: the text and image
  blocks of its human turns;
* standard content blocks, alone or in a list: ``{"type": "text", "text": ...}`` and
  ``{"type": "image", ...}`` with ``url`` (http(s), ``data:`` or ``file://``; anything else
  is a local path), ``base64`` (+ ``mime_type``) or ``path``; the OpenAI form
  ``{"type": "image_url", "image_url": {"url": ...}}`` and LangChain's older
  ``source_type`` form are normalised by ``langchain-core`` first.

The image stays a reference (path, URL, data URI or PIL image): it is opened once, by
:func:`ret2vqa.images.load_image`, where the query is embedded.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ret2vqa.errors import InputError

from ..pipeline import Query

__all__ = ["describe_query", "parse_query"]


def parse_query(obj: Any) -> Query:
    """One query from any of the shapes in the module docstring; :class:`InputError` if it has neither text nor image."""
    query = _parse(obj)
    if not isinstance(query.question, str):
        raise InputError(f"a query's question must be a string, got {type(query.question).__name__}")
    if not query.question.strip() and query.image is None:
        raise InputError("a query needs a non-empty question or an image, got neither")
    return query


def _parse(obj: Any) -> Query:
    from langchain_core.messages import BaseMessage
    from langchain_core.prompt_values import PromptValue

    if isinstance(obj, Query):
        return obj
    if isinstance(obj, str):
        return Query(obj)
    if isinstance(obj, PromptValue):
        return _from_messages(obj.to_messages())
    if isinstance(obj, BaseMessage):
        return _from_messages([obj])
    if isinstance(obj, Mapping):
        if "type" in obj and not any(k in obj for k in ("question", "query")):
            return _from_blocks([obj])
        question = next((obj[k] for k in ("question", "query", "text") if obj.get(k) is not None), "")
        image = obj.get("image")
        if isinstance(image, Mapping):  # an image content block as the image
            image = _from_blocks([image]).image
        return Query(question, image)
    if isinstance(obj, (list, tuple)):
        items = list(obj)
        if items and all(isinstance(m, BaseMessage) for m in items):
            return _from_messages(items)
        if len(items) == 2 and isinstance(items[0], str) and not _is_block(items[1]):
            return Query(items[0], items[1])  # (question, image)
        if items and all(isinstance(b, str) or _is_block(b) for b in items):
            return _from_blocks(items)
    raise InputError(
        f"cannot use a {type(obj).__name__} as a query: pass a string, {{'question', 'image'}}, (question, image), "
        f"a HumanMessage or content blocks"
    )


def _is_block(obj: Any) -> bool:
    return isinstance(obj, Mapping) and isinstance(obj.get("type"), str)


def _from_messages(messages: Sequence[Any]) -> Query:
    """The text and image of the human turns (a system prompt is not part of what is searched)."""
    human = [m for m in messages if getattr(m, "type", None) == "human"] or list(messages)
    blocks: list[Any] = []
    for message in human:
        blocks.extend(message.content_blocks)
    return _from_blocks(blocks)


def _from_blocks(blocks: Sequence[Any]) -> Query:
    from langchain_core.messages import HumanMessage

    normalised = HumanMessage(content=list(blocks)).content_blocks  # OpenAI / v0 forms -> standard blocks
    texts: list[str] = []
    images: list[Any] = []
    for block in normalised:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "image":
            images.append(_image_reference(block))
        elif kind in ("reasoning", "non_standard"):
            continue
        else:
            raise InputError(f"a query can hold text and image blocks, got a {kind!r} block")
    if len(images) > 1:
        raise InputError(f"ReT-2 embeds one image per query; this query holds {len(images)} image blocks")
    return Query(" ".join(t.strip() for t in texts if t.strip()), images[0] if images else None)


def _image_reference(block: Mapping[str, Any]) -> Any:
    """An image block as a reference :func:`ret2vqa.images.load_image` opens: a path, a URL or a data URI."""
    extras = block.get("extras") if isinstance(block.get("extras"), Mapping) else {}
    path = block.get("path") or extras.get("path")
    if path:
        return str(Path(str(path)).expanduser())
    if block.get("base64"):
        mime = block.get("mime_type") or "image/jpeg"
        return f"data:{mime};base64,{block['base64']}"
    url = block.get("url")
    if url:
        url = str(url)
        if url.startswith(("http://", "https://", "data:")):
            return url
        if url.startswith("file://"):
            return urllib.parse.unquote(urllib.parse.urlparse(url).path)
        return str(Path(url).expanduser())  # a bare local path
    if block.get("file_id"):
        raise InputError("an image block with a provider file_id cannot be read here: give its url, base64 data "
                         "or a local path")
    raise InputError(f"an image block needs a url, base64 data or a path, got keys {sorted(block)}")


def describe_query(obj: Any) -> str:
    """A short, serialisable description of a query for callbacks and traces (image data stays out)."""
    try:
        query = _parse(obj)
    except Exception:  # a malformed query is reported by the run's error; its start still needs a name
        return repr(obj)[:200]
    question = query.question if isinstance(query.question, str) else repr(query.question)
    image = query.image
    if image is None:
        return question
    if isinstance(image, (str, Path)):
        text = str(image)
        label = text[:40] + "..." if text.startswith("data:") else text
    else:
        label = type(image).__name__
    return f"{question} [image: {label}]"
