"""LangChain integration: a multimodal retriever, a vector store, embeddings, an answering chain, a tool.

* :class:`ReT2Retriever` — a ``BaseRetriever`` over the encoder and collection. ``invoke``
  takes text, ``{"question": "...", "image": "photo.jpg"}``, a ``HumanMessage`` or content
  blocks (image URL, base64 data, local path) and returns ``Document`` objects: passage text
  as ``page_content``, the payload fields (``title``, ``url``, ``topic``...) and ``id``,
  ``score``, absolute ``image`` path in ``metadata``. ``k``, ``filter``, ``search_type``
  (``similarity``, ``mmr``, ``similarity_score_threshold``) and ``search_kwargs``, sync and
  async; ``batch`` embeds all queries in one pass, with per-item errors under
  ``return_exceptions=True``.
* :class:`ReT2VectorStore` — a ``VectorStore`` over the same collections (both backends):
  ``add_documents``, ``add_images``, ``delete``, ``get_by_ids``, MMR, score thresholds,
  ``as_retriever()`` (the multimodal retriever).
* :class:`ReT2Embeddings` — ``Embeddings`` from the encoder, with ``embed_image``.
* :func:`build_answer_chain` — an LCEL ``Runnable`` from a question (and image) to
  ``{"question", "answer", "sources"}``; batched, streaming, traced.
* :func:`create_retriever_tool` — an agent tool that can take an image.

Retrievers and stores built ``from_config`` share the open collection within a process
(:func:`rag.store.open_shared`); close them (or use ``with``) when done. See the README's
LangChain section and ``docs/langchain.md``.
"""

from __future__ import annotations

from .chain import GenerateAnswer, RetrieveSources, accepts_images, build_answer_chain, unwrap_runnable
from .documents import passage_to_document
from .embeddings import ReT2Embeddings
from .queries import parse_query
from .retriever import MultimodalQuery, ReT2Retriever
from .search import SEARCH_TYPES, SearchOptions
from .tools import create_retriever_tool
from .vectorstore import ReT2VectorStore

__all__ = [
    "SEARCH_TYPES",
    "GenerateAnswer",
    "MultimodalQuery",
    "ReT2Embeddings",
    "ReT2Retriever",
    "ReT2VectorStore",
    "RetrieveSources",
    "SearchOptions",
    "accepts_images",
    "build_answer_chain",
    "create_retriever_tool",
    "parse_query",
    "passage_to_document",
    "unwrap_runnable",
]
