"""Stored passages as LangChain ``Document`` objects.

A document's ``metadata`` holds the passage's payload fields (``title``, ``url``,
``topic``, ``source``, ``wikidata_id``...): the same names a ``filter`` takes, so what a
caller sees is what it can filter on. The passage text is ``page_content`` and the
passage id is ``Document.id``; neither is repeated in the payload part. ``image`` is an
absolute path when the collection's image root is known, so it opens from any working
directory.

The retriever adds what a search result has on top (``id``, ``score``, ``entity_id``),
the vector store returns the stored metadata alone (LangChain's round trip:
``add_documents`` then ``similarity_search`` gives the documents back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from ret2vqa.passage import PASSAGE_ID_KEY, Passage

__all__ = ["HIDDEN_PAYLOAD", "passage_metadata", "passage_to_document", "resolve_image"]

#: Payload fields that a document shows elsewhere: ``Document.id``, ``page_content``, ``metadata["image"]``.
HIDDEN_PAYLOAD = frozenset({PASSAGE_ID_KEY, "text", "image_path"})


def resolve_image(path: Any, root: Path | None) -> Any:
    """``path`` made absolute under ``root`` when it is a relative local path; anything else as it is."""
    if not isinstance(path, str) or not path or path.startswith(("http://", "https://", "data:")):
        return path
    p = Path(path).expanduser()
    if p.is_absolute() or root is None:
        return str(p)
    return str(root / p)


def passage_metadata(passage: Passage, root: Path | None = None) -> dict[str, Any]:
    """The payload fields a document shows (see the module docstring), ``image`` made absolute."""
    metadata = {k: v for k, v in passage.payload.items() if k not in HIDDEN_PAYLOAD}
    image = passage.payload.get("image_path") or passage.payload.get("image") or passage.image
    if image:
        metadata["image"] = resolve_image(image, root)
    return metadata


def passage_to_document(passage: Passage, image_root: Path | None = None, *, with_score: bool = True) -> Document:
    """A retrieved passage as a ``Document``: payload fields, plus ``id``, ``title``, ``score``... (``with_score``)."""
    metadata = passage_metadata(passage, image_root)
    if with_score:
        extras = {"id": passage.id, "title": passage.title or None, "url": passage.url,
                  "entity_id": passage.entity_id, "score": passage.score}
        metadata.update({k: v for k, v in extras.items() if v is not None})
    return Document(page_content=passage.text, metadata=metadata, id=passage.id)
