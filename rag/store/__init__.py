"""The vector store behind retrieval: one small interface, two Qdrant backends.

>>> from rag.store import StoreConfig, open_store
>>> store = open_store(StoreConfig(path="data/qdrant", collection="evqa"))   # doctest: +SKIP
>>> hits = store.search(query_vector, k=10, filter={"wikidata_id": "Q42"})    # doctest: +SKIP

- :class:`EdgeStore` (``backend: edge``, default): Qdrant Edge embedded in the process,
  persistent on disk, HNSW + optional int8 quantization.
- :class:`QdrantServerStore` (``backend: server``): a Qdrant server or cluster through
  ``qdrant-client`` (``url: ":memory:"`` = local mode, tiny tests only).
- :func:`open_shared`: a handle on a collection this process may open more than once
  (LangChain retrievers and vector stores), closed with its last handle.

Both implement :class:`VectorStore`; see ``docs/store.md``.
"""

from __future__ import annotations

from typing import Any

from ret2vqa.errors import ConfigError

from .base import (
    POINT_ID_NAMESPACE,
    CollectionDamagedError,
    CollectionMetadata,
    CollectionMismatchError,
    CollectionNotFoundError,
    StoreError,
    StoreLockedError,
    VectorStore,
    check_compatible,
    parse_filter,
    point_id,
)
from .config import HnswSettings, QuantizationSettings, StoreConfig
from .edge import EdgeStore
from .server import QdrantServerStore
from .shared import SharedStore, open_shared, shared_count

__all__ = [
    "POINT_ID_NAMESPACE",
    "CollectionDamagedError",
    "CollectionMetadata",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "EdgeStore",
    "HnswSettings",
    "QdrantServerStore",
    "QuantizationSettings",
    "SharedStore",
    "StoreConfig",
    "StoreError",
    "StoreLockedError",
    "VectorStore",
    "check_compatible",
    "open_shared",
    "open_store",
    "parse_filter",
    "point_id",
    "shared_count",
]

BACKENDS: dict[str, type[VectorStore]] = {"edge": EdgeStore, "server": QdrantServerStore}


def open_store(
    config: StoreConfig, expect: CollectionMetadata | None = None, create: bool = False, **kwargs: Any
) -> VectorStore:
    """Open the collection described by ``config`` with its backend.

    ``expect``: the metadata of the encoder about to use the collection; an existing
    collection built otherwise raises :class:`CollectionMismatchError`. ``create``:
    create the collection from ``expect`` when it does not exist (otherwise
    :class:`CollectionNotFoundError`). Extra ``kwargs`` go to the backend's ``open``
    (e.g. ``client=`` for the server backend).
    """
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise ConfigError(f"unknown backend {config.backend!r} (known: {', '.join(BACKENDS)})", "store.backend") from None
    return cls.open(config, expect=expect, create=create, **kwargs)
