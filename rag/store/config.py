"""Store configuration: which Qdrant backend holds the knowledge base, and how it is indexed.

One :class:`StoreConfig` describes a collection wherever it lives. ``backend: edge``
(the default) keeps it on local disk through Qdrant Edge, the real Qdrant engine
in-process; ``backend: server`` talks to a Qdrant server or cluster through
``qdrant-client`` (``url: ":memory:"`` gives qdrant-client's pure-Python local mode,
fit for tiny tests only). The HNSW and quantization blocks apply to both.

These dataclasses are read from the ``store:`` section of a YAML config with
:func:`ret2vqa.config.from_dict`, so a misspelt key fails with its dotted path, and
check their values when constructed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ret2vqa.config import ConfigError, at_least


@dataclass
class HnswSettings:
    """HNSW graph parameters (build time: ``m``, ``ef_construct``; query time: ``hnsw_ef``).

    Defaults come from ``bench/store.py`` on clustered 768-d vectors: ``m=32``,
    ``ef_construct=256`` and ``hnsw_ef=128`` keep recall@10 >= 0.95 at 1M points with
    millisecond queries. Larger ``hnsw_ef`` raises recall at the cost of latency and
    can be changed at any time (it is not stored in the index).
    """

    m: int = 32
    ef_construct: int = 256
    hnsw_ef: int = 128
    # Segments smaller than this (in KB of vectors) are searched exhaustively instead of
    # through the graph: exact and fast for small collections.
    full_scan_threshold_kb: int = 10000
    # Threads used to build the graph; 0 lets Qdrant choose (all cores).
    max_indexing_threads: int = 0
    # Keep the graph on disk (mmap) instead of RAM: for collections larger than memory.
    on_disk: bool = False

    def __post_init__(self) -> None:
        at_least(self, 4, "m")
        if self.ef_construct < self.m:
            raise ConfigError(f"must be >= m ({self.m}), got {self.ef_construct}", "ef_construct")
        at_least(self, 1, "hnsw_ef")
        at_least(self, 0, "full_scan_threshold_kb", "max_indexing_threads")


@dataclass
class QuantizationSettings:
    """int8 scalar quantization (default), rescored with the original vectors.

    With ``type: scalar`` the HNSW graph is built and searched on int8 codes (kept in
    RAM when ``always_ram``: a quarter of the float vectors' size) and the best
    ``oversampling * k`` candidates are rescored with the original float32 vectors.
    ``bench/store.py`` at 50K 768-d vectors: the same recall@10 as float vectors, a 4x
    faster HNSW build and 3x faster queries. ``type: none`` keeps float32 only.
    """

    type: Literal["none", "scalar"] = "scalar"
    quantile: Optional[float] = 0.99
    always_ram: bool = True
    rescore: bool = True
    oversampling: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.type != "none"

    def __post_init__(self) -> None:
        if self.quantile is not None and not 0.5 <= self.quantile <= 1.0:
            raise ConfigError(f"must be in [0.5, 1.0], got {self.quantile}", "quantile")
        at_least(self, 1.0, "oversampling")


@dataclass
class StoreConfig:
    """Where the knowledge base lives and how it is indexed.

    Embedded (``backend: edge``): the collection is the directory ``path/collection``.
    Served (``backend: server``): ``url`` (+ ``api_key``, or the environment variable
    named by ``api_key_env``) of a Qdrant server or cluster; ``shard_number``,
    ``replication_factor`` and ``write_consistency_factor`` are passed to
    ``create_collection``; uploads run ``upload_parallel`` workers of
    ``upload_batch_size`` points.
    """

    backend: Literal["edge", "server"] = "edge"
    path: str = "data/qdrant"
    collection: str = "kb"
    distance: Literal["cosine", "dot"] = "cosine"
    hnsw: HnswSettings = field(default_factory=HnswSettings)
    quantization: QuantizationSettings = field(default_factory=QuantizationSettings)
    on_disk_vectors: bool = False
    on_disk_payload: bool = True
    # Payload fields that get a keyword index (fast filtered search), besides those the
    # ingestion format declares (``url`` for E-VQA, ``wikidata_id`` for InfoSeek).
    payload_indexes: list[str] = field(default_factory=list)
    # Optimizer: segments smaller than indexing_threshold_kb (KB of vectors) get no HNSW
    # graph (they are searched exhaustively, which is fast while small); None keeps
    # Qdrant's default (~10 MB, i.e. ~3,300 768-d vectors). default_segment_number:
    # how many segments the optimizer aims for (None/0: Qdrant's choice, from the CPUs).
    indexing_threshold_kb: Optional[int] = None
    default_segment_number: Optional[int] = None
    # Edge: threads serving searches (None: one per CPU).
    search_threads: Optional[int] = None
    # Server / cluster.
    url: Optional[str] = None
    api_key: Optional[str] = None
    api_key_env: str = "QDRANT_API_KEY"
    prefer_grpc: bool = False
    timeout_s: int = 120
    shard_number: Optional[int] = None
    replication_factor: Optional[int] = None
    write_consistency_factor: Optional[int] = None
    upload_parallel: int = 4
    upload_batch_size: int = 256

    def __post_init__(self) -> None:
        if not self.collection or "/" in self.collection or self.collection in {".", ".."}:
            raise ConfigError(f"must be a plain name, got {self.collection!r}", "collection")
        if self.backend == "server" and not self.url:
            raise ConfigError("required with backend 'server' (or use backend 'edge' with store.path)", "url")
        if self.backend == "edge" and not self.path:
            raise ConfigError("required with backend 'edge'", "path")
        at_least(self, 1, "shard_number", "replication_factor", "write_consistency_factor", "search_threads",
                 "upload_parallel", "upload_batch_size", "timeout_s")

    def snapshot(self) -> dict:
        """This config as plain data for the collection metadata, never including the API key."""
        from ret2vqa.config import to_dict

        data = to_dict(self)
        data.pop("api_key", None)
        return data

    def describe(self) -> str:
        """Where the collection is, in words, for messages."""
        if self.backend == "edge":
            return f"embedded collection '{self.collection}' in {self.path}"
        return f"collection '{self.collection}' on {self.url}"
