"""``ReT2VectorStore``: a LangChain ``VectorStore`` over the project's own collections (both backends).

What a ``langchain-qdrant`` user expects, on a collection that ``ret2vqa index build`` made
or that this class creates: ``add_documents`` / ``add_texts`` (a document whose
``metadata["image"]`` names an image is embedded with it), ``add_images``, ``delete``,
``get_by_ids``, similarity search with scores or relevance scores, MMR, filters on the
metadata fields, and ``as_retriever()``, which returns the multimodal
:class:`~rag.langchain.ReT2Retriever` (``search_type`` and ``search_kwargs`` as usual).
A query may carry an image wherever a query string goes (any shape of
:mod:`rag.langchain.queries`).

Payload layout: a document's metadata fields are payload fields as they are (so filters
name them directly, as for a built knowledge base), with the text under ``text``; the
reserved names ``passage_id``, ``text`` and ``image_path`` cannot be metadata keys.
Documents come back with the metadata they were added with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Callable

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ret2vqa.errors import ConfigError, InputError

from ..pipeline import Pipeline
from .documents import HIDDEN_PAYLOAD, passage_to_document
from .embeddings import ReT2Embeddings
from .queries import parse_query
from .retriever import ReT2Retriever
from .search import SearchOptions, relevance, run_search

__all__ = ["ReT2VectorStore"]


class ReT2VectorStore(VectorStore):
    """A ``VectorStore`` over one collection, embedding with the ReT-2 encoder that built it.

    ``ReT2VectorStore.from_config("configs/cpu.yaml")`` opens (or, with a configured
    encoder, creates) the collection of a pipeline config, shared with the other users of
    it in the process; :meth:`close` (or ``with``) releases it.
    ``ReT2VectorStore(pipeline)`` wraps an open :class:`~rag.pipeline.Pipeline`.
    """

    def __init__(self, pipeline: Pipeline, *, batch_size: int | None = None):
        self.pipeline = pipeline
        self.batch_size = batch_size or pipeline.config.encoder.batch_size
        self._embeddings: ReT2Embeddings | None = None  # built on first use: a late-interaction encoder has none
        self._owns = False
        self._root: Any = False

    # ------------------------------------------------------------------ construction and closing
    @classmethod
    def from_config(cls, config: Any = None, *, create: bool = True, encoder: Any = None,
                    **kwargs: Any) -> "ReT2VectorStore":
        """The collection of a pipeline config; created for its encoder when absent and ``create``."""
        from rag.components import open_collection
        from rag.config import load_pipeline_config

        cfg = load_pipeline_config(config)
        store, encoder = open_collection(cfg, encoder, create=create and cfg.encoder.given, shared=True)
        vectorstore = cls(Pipeline(encoder, store, None, cfg), **kwargs)
        vectorstore._owns = True
        return vectorstore

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, config: Any = None, **kwargs: Any) -> "ReT2VectorStore":
        """A store over the collection of ``config`` (a pipeline config), filled with ``texts``.

        ``embedding`` must be a :class:`ReT2Embeddings` of that config's encoder: a collection
        holds the vectors of one encoder.
        """
        if not isinstance(embedding, ReT2Embeddings):
            raise ConfigError("a ReT2VectorStore embeds with the collection's ReT-2 encoder: pass a ReT2Embeddings",
                              "embedding")
        store = cls.from_config(config, encoder=embedding.encoder, **kwargs)
        try:
            store.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Release the collection when this store opened it (``from_config``); idempotent."""
        if self._owns:
            self._owns = False
            self.pipeline.close()

    def __enter__(self) -> "ReT2VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embeddings(self) -> ReT2Embeddings:
        """The encoder as LangChain ``Embeddings`` (single-vector encoders only; the store itself
        searches late-interaction collections without it)."""
        if self._embeddings is None:
            self._embeddings = ReT2Embeddings(self.pipeline.encoder, instruction=self.pipeline.config.retrieval.instruction,
                                              batch_size=self.batch_size)
        return self._embeddings

    @property
    def store(self) -> Any:
        """The project's store underneath (``rag.store.VectorStore``)."""
        return self.pipeline.store

    def _image_base(self) -> Any:
        if self._root is False:
            self._root = self.pipeline.image_root()
        return self._root

    # ------------------------------------------------------------------ writing
    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Embed and store ``documents`` (text, with ``metadata["image"]`` when set); their ids.

        Ids: ``ids=`` when given, else each document's ``id``, else a new UUID. Re-adding an
        id overwrites it.
        """
        ids = kwargs.pop("ids", None)
        _no_options(kwargs, "add_documents")
        documents = list(documents)
        if ids is not None and len(ids) != len(documents):
            raise InputError(f"add_documents: {len(documents)} documents but {len(ids)} ids")
        ids = [str(i) if i is not None else (doc.id or str(uuid.uuid4()))
               for i, doc in zip(ids or [None] * len(documents), documents)]
        if not documents:
            return []
        payloads, texts, images = [], [], []
        for pid, doc in zip(ids, documents):
            metadata = dict(doc.metadata or {})
            clash = sorted(HIDDEN_PAYLOAD & set(metadata))
            if clash:
                raise InputError(f"document {pid!r}: metadata may not use the reserved field(s) {clash}")
            payloads.append({**metadata, "text": doc.page_content})
            texts.append(doc.page_content or None)
            images.append(metadata.get("image"))
        vectors = self.pipeline.encoder.encode_documents(texts, images=images, batch_size=self.batch_size)
        self.store.upsert(ids, vectors, payloads)
        self.store.flush()
        return ids

    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                  **kwargs: Any) -> list[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InputError(f"add_texts: {len(texts)} texts but {len(metadatas)} metadatas")
        docs = [Document(page_content=t, metadata=dict(m or {})) for t, m in zip(texts, metadatas or [{}] * len(texts))]
        return self.add_documents(docs, ids=ids, **kwargs)

    def add_images(self, uris: Sequence[str], metadatas: list[dict] | None = None, *, ids: list[str] | None = None,
                   texts: Sequence[str] | None = None) -> list[str]:
        """Store images (local paths, kept absolute, or URLs), each with optional text, as documents."""
        from pathlib import Path

        from .documents import resolve_image

        uris = list(uris)
        texts = list(texts) if texts is not None else [""] * len(uris)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in uris]
        if not len(uris) == len(texts) == len(metadatas):
            raise InputError(f"add_images: {len(uris)} images, {len(texts)} texts, {len(metadatas)} metadatas")
        docs = [Document(page_content=t, metadata={**(m or {}), "image": resolve_image(str(u), Path.cwd())})
                for u, t, m in zip(uris, texts, metadatas)]
        return self.add_documents(docs, ids=ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents ``ids`` (absent ids are ignored)."""
        _no_options(kwargs, "delete")
        if ids is None:
            raise ConfigError("name the documents to delete (deleting a whole collection is `ret2vqa index` work)",
                              "ids")
        self.store.delete([str(i) for i in ids])
        self.store.flush()
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        base = self._image_base()
        return [passage_to_document(p, base, with_score=False) for p in self.store.retrieve([str(i) for i in ids])]

    # ------------------------------------------------------------------ searching
    def _vector(self, query: Any) -> Any:
        return self.pipeline.encode_queries([parse_query(query)])

    def _search(self, vectors: Any, options: SearchOptions) -> list[tuple[Document, float]]:
        base = self._image_base()
        return [(passage_to_document(p, base, with_score=False), float(p.score))
                for p in run_search(self.store, vectors, options)[0]]

    def similarity_search_with_score(self, query: Any, k: int = 4, filter: dict | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents most similar to ``query`` (text, or any multimodal query shape) with their similarity."""
        _no_options(kwargs, "similarity_search")
        return self._search(self._vector(query), SearchOptions(k=k, filter=filter))

    def similarity_search(self, query: Any, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4, filter: dict | None = None,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        _no_options(kwargs, "similarity_search_by_vector")
        return self._search([embedding], SearchOptions(k=k, filter=filter))

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return relevance

    def max_marginal_relevance_search(self, query: Any, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      **kwargs: Any) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(self._vector(query)[0], k, fetch_k, lambda_mult, **kwargs)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: dict | None = None,
                                                **kwargs: Any) -> list[Document]:
        _no_options(kwargs, "max_marginal_relevance_search")
        options = SearchOptions(k=k, filter=filter, search_type="mmr", fetch_k=fetch_k, lambda_mult=lambda_mult)
        return [doc for doc, _ in self._search([embedding], options)]

    # ------------------------------------------------------------------ retriever
    def as_retriever(self, **kwargs: Any) -> ReT2Retriever:
        """The multimodal :class:`ReT2Retriever` over this collection (``search_type``, ``search_kwargs``, ``k``,
        ``filter``, ``tags``...); it shares this store's open collection."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return ReT2Retriever(pipeline=self.pipeline, tags=tags, **kwargs)


def _no_options(kwargs: dict[str, Any], what: str) -> None:
    if kwargs:
        raise ConfigError(f"{what}: unknown option(s) {', '.join(sorted(kwargs))}", sorted(kwargs)[0])
