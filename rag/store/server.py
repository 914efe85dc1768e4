"""Served store: a Qdrant server or distributed cluster through ``qdrant-client``.

For knowledge bases that outgrow one machine, or that several services share. The
collection is created with the sharding, replication, on-disk and quantization
settings of :class:`~rag.store.config.StoreConfig`; uploads go through
``upload_points`` with parallel workers and retries; the encoder metadata and the
indexing state live in the collection's own metadata (Qdrant >= 1.16), so every client
of the cluster sees them.

``url: ":memory:"`` selects qdrant-client's local mode (pure Python, brute force):
convenient for tiny tests, far too slow beyond ~20,000 points (``docs/store.md``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from ret2vqa.passage import Passage

from .base import CollectionMetadata, Condition, StoreError, VectorStore, parse_filter, point_id
from .config import StoreConfig

logger = logging.getLogger(__name__)

METADATA_KEY = "ret2vqa"
STATE_PREFIX = "ret2vqa_state:"
LOCAL_MODE_LIMIT = 20_000


def _models():
    from qdrant_client import models

    return models


def make_client(config: StoreConfig) -> Any:
    """A ``QdrantClient`` for ``config.url`` (``":memory:"`` gives local mode)."""
    from qdrant_client import QdrantClient

    if config.url == ":memory:":
        return QdrantClient(location=":memory:")
    api_key = config.api_key or os.environ.get(config.api_key_env) or None
    return QdrantClient(url=config.url, api_key=api_key, prefer_grpc=config.prefer_grpc, timeout=config.timeout_s)


class QdrantServerStore(VectorStore):
    """A collection on a Qdrant server or cluster. Open it with :meth:`open`."""

    backend = "server"

    def __init__(self, config: StoreConfig, metadata: CollectionMetadata, client: Any):
        self.config = config
        self._metadata = metadata
        self._client = client
        self._name = config.collection
        self._local = config.url == ":memory:"
        self._warned_local = False

    # Opening (the shared logic is VectorStore.open) -----------------------------------------

    @classmethod
    def _connect(cls, config: StoreConfig, client: Any = None) -> Any:
        """A ``QdrantClient``: ``client`` when given (a ``":memory:"`` client holds its data, so tests
        reopen a collection by passing the same one), else a new one for ``config.url``."""
        return client if client is not None else make_client(config)

    @classmethod
    def _read_metadata(cls, config: StoreConfig, client: Any) -> dict[str, Any] | None:
        try:
            exists = client.collection_exists(config.collection)
        except Exception as exc:
            raise StoreError(f"cannot reach Qdrant at {config.url}: {type(exc).__name__}: {exc}") from exc
        if not exists:
            return None
        stored = (client.get_collection(config.collection).config.metadata or {}).get(METADATA_KEY)
        if stored is None:
            raise StoreError(
                f"{config.describe()} exists but was not created by ret2vqa (no '{METADATA_KEY}' collection "
                f"metadata); use another collection name"
            )
        return stored

    @classmethod
    def _attach(cls, config: StoreConfig, metadata: CollectionMetadata, client: Any) -> "QdrantServerStore":
        return cls(config, metadata, client)

    @classmethod
    def _create(cls, config: StoreConfig, client: Any, metadata: CollectionMetadata) -> None:
        m = _models()
        quant = config.quantization
        quantization = None
        if quant.enabled:
            quantization = m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=quant.quantile, always_ram=quant.always_ram)
            )
        distance = {"cosine": m.Distance.COSINE, "dot": m.Distance.DOT}[metadata.distance]
        client.create_collection(
            config.collection,
            vectors_config=m.VectorParams(
                size=metadata.dim, distance=distance, on_disk=config.on_disk_vectors,
                multivector_config=(m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM)
                                    if metadata.multivector else None),
            ),
            shard_number=config.shard_number,
            replication_factor=config.replication_factor,
            write_consistency_factor=config.write_consistency_factor,
            on_disk_payload=config.on_disk_payload,
            hnsw_config=m.HnswConfigDiff(
                m=config.hnsw.m,
                ef_construct=config.hnsw.ef_construct,
                full_scan_threshold=config.hnsw.full_scan_threshold_kb,
                max_indexing_threads=config.hnsw.max_indexing_threads,
                on_disk=config.hnsw.on_disk,
            ),
            quantization_config=quantization,
            optimizers_config=m.OptimizersConfigDiff(
                indexing_threshold=config.indexing_threshold_kb, default_segment_number=config.default_segment_number
            ),
            metadata={METADATA_KEY: metadata.to_dict()},
        )
        stored = (client.get_collection(config.collection).config.metadata or {}).get(METADATA_KEY)
        if stored is None:
            client.delete_collection(config.collection)
            raise StoreError(
                f"the Qdrant server at {config.url} did not keep the collection metadata; ret2vqa needs Qdrant >= 1.16"
            )
        logger.info("created %s for encoder %s", config.describe(), metadata.describe_encoder())

    # Data ------------------------------------------------------------------------------

    @property
    def metadata(self) -> CollectionMetadata:
        return self._metadata

    @property
    def client(self) -> Any:
        return self._client

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        ids, vectors, payloads = self._check_batch(ids, vectors, payloads)
        if not ids:
            return
        m = _models()
        points = [m.PointStruct(id=point_id(i), vector=v, payload=p) for i, v, p in zip(ids, vectors.tolist(), payloads)]
        if self._local:
            self._client.upsert(self._name, points=points, wait=True)
            if not self._warned_local and self.count() > LOCAL_MODE_LIMIT:
                self._warned_local = True
                logger.warning(
                    "qdrant-client local mode holds more than %d points: searches are brute force and slow; "
                    "use the embedded backend (store.backend: edge) or a Qdrant server",
                    LOCAL_MODE_LIMIT,
                )
            return
        self._client.upload_points(
            self._name,
            points=points,
            batch_size=self.config.upload_batch_size,
            parallel=self.config.upload_parallel,
            max_retries=3,
            wait=True,
        )

    def _search_params(self, hnsw_ef: int | None, exact: bool) -> Any:
        if self._local:
            return None  # local mode is always exact and warns about any search params
        m = _models()
        quant = self.config.quantization
        qparams = None
        if quant.enabled:  # exact search means exact scores too: bypass the int8 codes
            qparams = (m.QuantizationSearchParams(ignore=True) if exact
                       else m.QuantizationSearchParams(rescore=quant.rescore, oversampling=quant.oversampling))
        return m.SearchParams(hnsw_ef=hnsw_ef or self.config.hnsw.hnsw_ef, exact=exact, quantization=qparams)

    def search(self, vector, k=10, filter=None, hnsw_ef=None, exact=False) -> list[Passage]:
        rows = self._check_query(vector)
        if rows.shape[0] != 1:
            raise ValueError(f"search: expected one query vector, got {rows.shape[0]} (use search_batch)")
        response = self._client.query_points(
            self._name,
            query=rows[0].tolist(),
            limit=int(k),
            query_filter=self._filter(filter),
            search_params=self._search_params(hnsw_ef, exact),
            with_payload=True,
        )
        return [self._passage(p) for p in response.points]

    def search_batch(self, vectors, k=10, filter=None, hnsw_ef=None, exact=False) -> list[list[Passage]]:
        m = _models()
        rows = self._check_query(vectors)
        flt, params = self._filter(filter), self._search_params(hnsw_ef, exact)
        requests = [m.QueryRequest(query=r, limit=int(k), filter=flt, params=params, with_payload=True) for r in rows.tolist()]
        responses = self._client.query_batch_points(self._name, requests=requests)
        return [[self._passage(p) for p in r.points] for r in responses]

    def count(self, filter=None) -> int:
        return int(self._client.count(self._name, count_filter=self._filter(filter), exact=True).count)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Passage]:
        ids = list(ids)
        if not ids:
            return []
        pids = [point_id(i) for i in ids]
        records = self._client.retrieve(self._name, ids=pids, with_payload=True, with_vectors=bool(with_vectors))
        by_id = {str(r.id): r for r in records}
        return [self._passage(by_id[p], with_vectors) for p in pids if p in by_id]

    def sample(self, limit: int, with_vectors: bool = True) -> list[Passage]:
        if limit < 1:
            return []
        records, _ = self._client.scroll(self._name, limit=int(limit), with_payload=True, with_vectors=bool(with_vectors))
        return [self._passage(r, with_vectors) for r in records]

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if ids:
            m = _models()
            self._client.delete(self._name, points_selector=m.PointIdsList(points=[point_id(i) for i in ids]), wait=True)

    def create_payload_index(self, field_name: str) -> None:
        if self._local:
            return  # local mode has no payload indexes (and does not need them)
        m = _models()
        self._client.create_payload_index(self._name, field_name=field_name, field_schema=m.PayloadSchemaType.KEYWORD, wait=True)

    def flush(self) -> None:
        """Uploads use ``wait=True``: an acknowledged write is already durable on the server."""

    def optimize(self, timeout_s: float = 3600.0) -> None:
        """Wait until the server has finished indexing (collection status green)."""
        if self._local:
            return
        m = _models()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._client.get_collection(self._name).status
            if status == m.CollectionStatus.GREEN:
                return
            time.sleep(2.0)
        logger.warning("collection %s is still being optimized by the server after %.0f s", self._name, timeout_s)

    def info(self) -> dict[str, Any]:
        info = self._client.get_collection(self._name)
        return {
            "backend": self.backend,
            "location": "local mode (:memory:)" if self._local else self.config.url,
            "collection": self._name,
            "count": self.count(),
            "indexed_vectors": int(info.indexed_vectors_count or 0),
            "segments": int(info.segments_count or 0),
            "status": str(getattr(info.status, "value", info.status)),
            "payload_indexes": sorted((info.payload_schema or {}).keys()),
            "metadata": self._metadata.to_dict(),
        }

    # State records -----------------------------------------------------------------------

    def load_state(self, name: str) -> dict[str, Any] | None:
        metadata = self._client.get_collection(self._name).config.metadata or {}
        value = metadata.get(STATE_PREFIX + name)
        return dict(value) if value else None

    def save_state(self, name: str, data: Mapping[str, Any] | None) -> None:
        # Collection metadata updates are merged key by key: one key per state record.
        self._client.update_collection(self._name, metadata={STATE_PREFIX + name: dict(data) if data else None})

    def close(self) -> None:
        if self._client is not None and not self._local:
            self._client.close()
        self._client = None if not self._local else self._client

    # Filters -----------------------------------------------------------------------------

    def _filter(self, spec: Mapping[str, Any] | None) -> Any:
        conditions = parse_filter(spec)
        if not conditions:
            return None
        return _models().Filter(must=[_condition(c) for c in conditions])


def _condition(c: Condition) -> Any:
    m = _models()
    if c.op == "eq":
        return m.FieldCondition(key=c.key, match=m.MatchValue(value=c.value))
    if c.op == "any":
        return m.FieldCondition(key=c.key, match=m.MatchAny(any=list(c.value)))
    return m.FieldCondition(key=c.key, range=m.Range(**c.value))
