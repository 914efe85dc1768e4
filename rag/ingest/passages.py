"""The chunker that cuts articles into passages (:class:`ret2vqa.passage.Passage`, the unit of retrieval).

A passage is what gets one vector: the text the encoder reads (title prefixed), an
optional local image (then it is encoded as an image+text document), and the payload
stored next to the vector. Its ``id`` is stable across runs and machines (URL +
section, entity + chunk number, or the dataset's own passage id), so the store's UUID5
point ids make re-indexing idempotent.
"""

from __future__ import annotations

import re
from typing import Iterator

# A sentence ends with . ! or ? (optionally followed by closing quotes/brackets) and whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with a light rule (no model): good enough for packing."""
    parts = []
    for paragraph in text.split("\n"):
        paragraph = paragraph.strip()
        if paragraph:
            parts.extend(s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())
    return parts


def chunk_words(text: str, max_words: int) -> Iterator[str]:
    """Cut ``text`` into passages of at most ``max_words`` whitespace-separated words.

    Whole sentences are packed greedily (as Wiki-LLaVA / ReflectiVA do with ~300-token
    sentence-packed chunks); a sentence longer than the budget is cut into word windows.
    Deterministic: the same text always gives the same chunks, which resuming relies on.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    current: list[str] = []
    for sentence in split_sentences(text):
        words = sentence.split()
        if current and len(current) + len(words) > max_words:
            yield " ".join(current)
            current = []
        start = 0
        while len(words) - start > max_words:  # windows by index: a huge sentence costs linear time
            if current:
                yield " ".join(current)
                current = []
            yield " ".join(words[start : start + max_words])
            start += max_words
        current.extend(words[start:])
    if current:
        yield " ".join(current)


def bound_text(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last whitespace before the limit when there is one."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", max_chars // 2, max_chars + 1)
    return text[: cut if cut > 0 else max_chars]
