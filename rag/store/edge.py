"""Embedded store: Qdrant Edge (``qdrant-edge-py``), the real Qdrant engine running in-process.

Why this is the default: it persists to disk with a write-ahead log, builds HNSW
graphs (optionally over int8-quantized vectors), filters on payload and answers in
milliseconds at millions of points, with no server to run. ``qdrant-client``'s local
mode is brute-force Python and only fit for tiny collections (see ``docs/store.md``).

On-disk layout of a collection ``path/collection/``::

    collection.json    # CollectionMetadata: encoder, dimension, distance, creation config
    shard/             # the Qdrant Edge shard (segments + WAL)
    state/NAME.json    # small state records, e.g. indexing progress (atomic writes)
    .lock              # held while a process has the collection open

The metadata file is written before the shard is created, so a crash during creation
is finished by the next open instead of leaving an unlabelled shard.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ret2vqa.passage import Passage

from .base import (
    CollectionDamagedError,
    CollectionMetadata,
    CollectionNotFoundError,
    Condition,
    StoreError,
    VectorStore,
    parse_filter,
    point_id,
)
from .config import StoreConfig
from .files import DirLock, read_json, write_json_atomic

logger = logging.getLogger(__name__)

METADATA_FILE = "collection.json"
SHARD_DIR = "shard"
STATE_DIR = "state"
_STATE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def collection_dir(config: StoreConfig) -> Path:
    return Path(config.path).expanduser() / config.collection


def _edge():
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise StoreError("the embedded store needs `qdrant-edge-py` (pip install qdrant-edge-py)") from exc
    return qdrant_edge


class EdgeStore(VectorStore):
    """A collection on local disk served by Qdrant Edge. Open it with :meth:`open`."""

    backend = "edge"

    def __init__(self, config: StoreConfig, metadata: CollectionMetadata, shard: Any, lock: DirLock):
        self.config = config
        self._metadata = metadata
        self._shard = shard
        self._lock = lock
        self._dir = collection_dir(config)
        self._qe = _edge()

    # Opening (the shared logic is VectorStore.open) -----------------------------------------

    @classmethod
    def _read_metadata(cls, config: StoreConfig, handle: Any) -> dict[str, Any] | None:
        meta_path = collection_dir(config) / METADATA_FILE
        return read_json(meta_path) if meta_path.is_file() else None

    @classmethod
    def _create(cls, config: StoreConfig, handle: Any, metadata: CollectionMetadata) -> None:
        # The metadata file is written first: a crash before the shard exists is finished by the next open.
        root = collection_dir(config)
        if (root / SHARD_DIR).exists() and any((root / SHARD_DIR).iterdir()):
            raise StoreError(f"{root / SHARD_DIR} holds data but {root / METADATA_FILE} is missing; move it away first")
        write_json_atomic(root / METADATA_FILE, metadata.to_dict())
        logger.info("created %s for encoder %s", config.describe(), metadata.describe_encoder())

    @classmethod
    def _attach(cls, config: StoreConfig, metadata: CollectionMetadata, handle: Any) -> "EdgeStore":
        root = collection_dir(config)
        lock = DirLock(root, config.describe()).acquire()
        try:
            shard = cls._open_shard(config, metadata, root / SHARD_DIR)
        except BaseException:
            lock.release()
            raise
        return cls(config, metadata, shard, lock)

    @classmethod
    def _others(cls, config: StoreConfig, handle: Any) -> str:
        existing = sorted(p.parent.name for p in Path(config.path).expanduser().glob(f"*/{METADATA_FILE}"))
        return f" (collections there: {', '.join(existing)})" if existing else ""

    @classmethod
    def peek(cls, config: StoreConfig) -> dict[str, Any]:
        """Metadata and state records of a collection, read from its files without opening the shard.

        Works while another process holds the collection (e.g. ``index info`` during a build).
        """
        root = collection_dir(config)
        meta_path = root / METADATA_FILE
        if not meta_path.is_file():
            raise CollectionNotFoundError(f"no {config.describe()}")
        states = {p.stem: read_json(p) for p in sorted((root / STATE_DIR).glob("*.json"))}
        return {
            "backend": cls.backend,
            "location": str(root),
            "collection": config.collection,
            "count": None,
            "metadata": read_json(meta_path),
            "states": states,
        }

    @staticmethod
    def _open_shard(config: StoreConfig, metadata: CollectionMetadata, shard_dir: Path) -> Any:
        qe = _edge()
        if (shard_dir / "edge_config.json").is_file():
            load_config = qe.EdgeConfig(max_search_threads=config.search_threads) if config.search_threads else None
            try:
                return qe.EdgeShard.load(str(shard_dir), load_config)
            except Exception as exc:
                raise damaged(config, f"its shard in {shard_dir} cannot be loaded ({exc})") from exc
        shard_dir.mkdir(parents=True, exist_ok=True)
        return qe.EdgeShard.create(str(shard_dir),
                                   edge_config(config, metadata.dim, metadata.distance, metadata.multivector))

    # Data ------------------------------------------------------------------------------

    @property
    def metadata(self) -> CollectionMetadata:
        return self._metadata

    @property
    def path(self) -> Path:
        return self._dir

    @contextlib.contextmanager
    def _engine(self, what: str):
        """Engine failures of ``what`` as :class:`CollectionDamagedError` naming the collection.

        Qdrant Edge reports a truncated vector or payload file (or any other broken file) as
        a bare ``Exception`` from the engine; our own checks raise ``UserError``s, let through.
        """
        try:
            yield
        except (StoreError, ValueError, TypeError):
            raise
        except Exception as exc:
            raise damaged(self.config, f"{what} failed ({exc})") from exc

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        ids, vectors, payloads = self._check_batch(ids, vectors, payloads)
        if not ids:
            return
        qe = self._qe
        rows = vectors.tolist()
        points = [qe.Point(point_id(pid), row, payload) for pid, row, payload in zip(ids, rows, payloads)]
        with self._engine("writing points"):
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def _params(self, hnsw_ef: int | None, exact: bool) -> Any:
        qe = self._qe
        quant = self.config.quantization
        qparams = None
        if quant.enabled:  # exact search means exact scores too: bypass the int8 codes
            qparams = (qe.QuantizationSearchParams(ignore=True) if exact
                       else qe.QuantizationSearchParams(rescore=quant.rescore, oversampling=quant.oversampling))
        return qe.SearchParams(hnsw_ef=hnsw_ef or self.config.hnsw.hnsw_ef, exact=exact, quantization=qparams)

    def _request(self, row: list[float], k: int, flt: Any, params: Any) -> Any:
        qe = self._qe
        return qe.QueryRequest(
            limit=int(k), query=qe.Query.Nearest(row), filter=flt, params=params, with_payload=True, with_vector=False
        )

    def search(self, vector, k=10, filter=None, hnsw_ef=None, exact=False) -> list[Passage]:
        rows = self._check_query(vector)
        if rows.shape[0] != 1:
            raise ValueError(f"search: expected one query vector, got {rows.shape[0]} (use search_batch)")
        request = self._request(rows[0].tolist(), k, self._filter(filter), self._params(hnsw_ef, exact))
        with self._engine("search"):
            return [self._passage(p) for p in self._shard.query(request)]

    def search_batch(self, vectors, k=10, filter=None, hnsw_ef=None, exact=False) -> list[list[Passage]]:
        rows = self._check_query(vectors)
        flt, params = self._filter(filter), self._params(hnsw_ef, exact)
        batch = self._qe.QueryBatchRequest([self._request(r, k, flt, params) for r in rows.tolist()])
        with self._engine("search"):
            return [[self._passage(p) for p in hits] for hits in self._shard.query_batch(batch)]

    def count(self, filter=None) -> int:
        request = self._qe.CountRequest(exact=True, filter=self._filter(filter))
        with self._engine("counting points"):
            return int(self._shard.count(request))

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Passage]:
        ids = list(ids)
        if not ids:
            return []
        pids = [point_id(i) for i in ids]
        with self._engine("reading points"):
            records = self._shard.retrieve(pids, with_payload=True, with_vector=bool(with_vectors))
        by_id = {str(r.id): r for r in records}
        return [self._passage(by_id[p], with_vectors) for p in pids if p in by_id]

    def sample(self, limit: int, with_vectors: bool = True) -> list[Passage]:
        if limit < 1:
            return []
        request = self._qe.ScrollRequest(limit=int(limit), with_payload=True, with_vector=bool(with_vectors))
        with self._engine("reading points"):
            records, _ = self._shard.scroll(request)
        return [self._passage(r, with_vectors) for r in records]

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if ids:
            with self._engine("deleting points"):
                self._shard.update(self._qe.UpdateOperation.delete_points([point_id(i) for i in ids]))

    def create_payload_index(self, field_name: str) -> None:
        qe = self._qe
        if field_name in self._shard.info().payload_schema:
            return
        self._shard.update(qe.UpdateOperation.create_field_index(field_name, qe.PayloadSchemaType.Keyword))

    def flush(self) -> None:
        with self._engine("flushing"):
            self._shard.flush()

    def optimize(self) -> None:
        with self._engine("building the search index"):
            self._shard.optimize()
            self._shard.flush()

    def info(self) -> dict[str, Any]:
        with self._engine("reading the shard's status"):
            shard_info = self._shard.info()
        return {
            "backend": self.backend,
            "location": str(self._dir),
            "collection": self.config.collection,
            "count": int(shard_info.points_count),
            "indexed_vectors": int(shard_info.indexed_vectors_count),
            "segments": int(shard_info.segments_count),
            "payload_indexes": sorted(shard_info.payload_schema),
            "metadata": self._metadata.to_dict(),
        }

    # State records -----------------------------------------------------------------------

    def _state_path(self, name: str) -> Path:
        if not _STATE_NAME.match(name):
            raise ValueError(f"state names may hold letters, digits, '_', '-', '.': got {name!r}")
        return self._dir / STATE_DIR / f"{name}.json"

    def load_state(self, name: str) -> dict[str, Any] | None:
        path = self._state_path(name)
        return read_json(path) if path.is_file() else None

    def save_state(self, name: str, data: Mapping[str, Any] | None) -> None:
        path = self._state_path(name)
        if data is None:
            path.unlink(missing_ok=True)
        else:
            write_json_atomic(path, dict(data))

    def close(self) -> None:
        if self._shard is not None:
            try:
                with self._engine("flushing"):
                    self._shard.flush()
                    self._shard.close()
            finally:
                self._shard = None
                self._lock.release()

    # Filters -----------------------------------------------------------------------------

    def _filter(self, spec: Mapping[str, Any] | None) -> Any:
        conditions = parse_filter(spec)
        if not conditions:
            return None
        return self._qe.Filter(must=[self._condition(c) for c in conditions])

    def _condition(self, c: Condition) -> Any:
        qe = self._qe
        if c.op == "eq":
            return qe.FieldCondition(c.key, match=qe.MatchValue(c.value))
        if c.op == "any":
            return qe.FieldCondition(c.key, match=qe.MatchAny(list(c.value)))
        return qe.FieldCondition(c.key, range=qe.RangeFloat(**c.value))


def damaged(config: StoreConfig, problem: str) -> CollectionDamagedError:
    """The error for a collection whose files are damaged: what failed, and how to recover."""
    root = collection_dir(config)
    return CollectionDamagedError(
        f"{config.describe()} is damaged: {problem}. Check it with `ret2vqa index verify --store {config.path} "
        f"--collection {config.collection}`; to rebuild it, move {root} away and run `ret2vqa index build` again"
    )


def edge_config(config: StoreConfig, dim: int, distance: str, multivector: bool = False) -> Any:
    """The Qdrant Edge shard configuration for a new collection.

    ``multivector``: each point holds several ``dim``-wide vectors, ranked by MaxSim
    (late interaction); quantization and rescoring apply to them the same way.
    """
    qe = _edge()
    hnsw = config.hnsw
    quant = config.quantization
    quantization = None
    if quant.enabled:
        quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=quant.quantile, always_ram=quant.always_ram)
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(
            size=int(dim), distance=_DISTANCES[distance](qe), on_disk=config.on_disk_vectors,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if multivector else None,
        ),
        hnsw_config=qe.HnswIndexConfig(
            m=hnsw.m,
            ef_construct=hnsw.ef_construct,
            full_scan_threshold=hnsw.full_scan_threshold_kb,
            max_indexing_threads=hnsw.max_indexing_threads,
            on_disk=hnsw.on_disk,
        ),
        quantization_config=quantization,
        optimizers=qe.EdgeOptimizersConfig(
            indexing_threshold=config.indexing_threshold_kb, default_segment_number=config.default_segment_number
        ),
        on_disk_payload=config.on_disk_payload,
        max_search_threads=config.search_threads,
    )


_DISTANCES = {"cosine": lambda qe: qe.Distance.Cosine, "dot": lambda qe: qe.Distance.Dot}

