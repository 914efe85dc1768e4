"""The passage: the unit of retrieval, one type from ingestion to the generator's prompt.

A knowledge-base reader makes :class:`Passage` objects (id, text, optional image file,
the payload to store), the store gives them back from a search with their ``score``
(and, when asked, their ``vector``), the pipeline hands them to the generator, which
reads ``title`` and ``text``, and the LangChain adapter turns them into ``Document``
objects. Fields are keyword-only so that no call site depends on their order.

The payload is what the store keeps beside the vector (``title``, ``text``, ``url``,
``wikidata_id``, ``section_index``, ...). ``title`` is also a field, because every
consumer needs it; ``url`` and ``entity_id`` are read from the payload, where each
dataset format puts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Payload key holding the passage id (the human-readable id a store's point id derives from).
PASSAGE_ID_KEY = "passage_id"


@dataclass(kw_only=True)
class Passage:
    """One retrievable unit: ``text`` (+ optional ``image``), its ``payload``, and once retrieved, its ``score``."""

    id: str | None = None
    text: str = ""
    title: str = ""
    #: The passage's image file: encoded with the text at indexing; as stored, after retrieval.
    image: str | None = None
    #: Similarity to the query (retrieved passages only).
    score: float | None = None
    #: Stored beside the vector: title, text, url / wikidata_id, format-specific fields.
    payload: dict[str, Any] = field(default_factory=dict)
    #: The stored vector, when fetched with it (``VectorStore.retrieve(..., with_vectors=True)``).
    vector: Any = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str | None:
        return self.payload.get("url")

    @property
    def entity_id(self) -> str | None:
        """The entity the passage is about: a Wikidata id (InfoSeek) or the dataset's own entity id."""
        return self.payload.get("wikidata_id") or self.payload.get("entity_id")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None, *, id: Any = None, score: float | None = None,
                     vector: Any = None) -> "Passage":
        """A stored passage as the store returns it (``id``: the point id, used when the payload has none)."""
        p = dict(payload or {})
        pid = p.get(PASSAGE_ID_KEY)
        return cls(
            id=pid if isinstance(pid, str) else (None if id is None else str(id)),
            text=str(p.get("text") or ""),
            title=str(p.get("title") or ""),
            image=p.get("image_path") or p.get("image"),
            score=None if score is None else float(score),
            payload=p,
            vector=vector,
        )

    @classmethod
    def coerce(cls, obj: Any) -> "Passage":
        """Accept a :class:`Passage`, a string, a mapping with ``title``/``text`` (``passage``,
        ``content``, ``page_content`` too), or a LangChain-style document (``page_content`` +
        ``metadata``)."""
        if isinstance(obj, Passage):
            return obj
        if isinstance(obj, str):
            return cls(text=obj)
        if isinstance(obj, Mapping):
            text = next((obj[k] for k in ("text", "passage", "content", "page_content") if obj.get(k) is not None), "")
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
            pid = obj.get("id", meta.get("id"))
            return cls(title=str(obj.get("title") or meta.get("title") or ""), text=str(text),
                       id=None if pid is None else str(pid), score=obj.get("score", meta.get("score")))
        if hasattr(obj, "page_content"):
            meta = getattr(obj, "metadata", None) or {}
            pid = getattr(obj, "id", None) or meta.get("id")
            return cls(title=str(meta.get("title") or ""), text=str(obj.page_content or ""),
                       id=None if pid is None else str(pid), score=meta.get("score"))
        raise TypeError(f"cannot use a {type(obj).__name__} as a passage: expected title/text fields")

    def to_dict(self, with_payload: bool = False) -> dict[str, Any]:
        """``{"id", "score", "text", "title", "url", "entity_id", "image"}`` (the ``ask --json`` shape)."""
        data = {"id": self.id, "score": self.score, "text": self.text, "title": self.title, "url": self.url,
                "entity_id": self.entity_id, "image": self.image}
        if with_payload:
            data["payload"] = dict(self.payload)
        return data
