"""The store interface on both backends: embedded Qdrant Edge and qdrant-client local mode.

Real stores on small data (no mocks): every contract test runs against Qdrant Edge in a
temporary directory and against ``QdrantClient(":memory:")``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from rag.store import (
    POINT_ID_NAMESPACE,
    CollectionMetadata,
    CollectionMismatchError,
    CollectionNotFoundError,
    EdgeStore,
    HnswSettings,
    QuantizationSettings,
    StoreConfig,
    StoreError,
    StoreLockedError,
    open_store,
    parse_filter,
    point_id,
)

DIM = 24


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = DIM, clusters: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)))


META = CollectionMetadata(encoder_name="enc-a", encoder_revision="r1", encoder_fingerprint="f" * 16, dim=DIM)


@pytest.fixture(params=["edge", "server-local"])
def backend(request, tmp_path):
    """A factory opening the same collection again on one backend (local mode shares its client)."""
    if request.param == "edge":
        config = StoreConfig(path=str(tmp_path / "qdrant"), collection="kb")

        def factory(expect=META, create=True, **overrides):
            cfg = StoreConfig(**{**config.__dict__, **overrides}) if overrides else config
            return open_store(cfg, expect=expect, create=create)

        return factory
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    config = StoreConfig(backend="server", url=":memory:", collection="kb")

    def factory(expect=META, create=True, **overrides):
        cfg = StoreConfig(**{**config.__dict__, **overrides}) if overrides else config
        return open_store(cfg, expect=expect, create=create, client=client)

    return factory


def filled(factory, n=60):
    vectors = clustered(n)
    ids = [f"doc-{i}" for i in range(n)]
    payloads = [{"group": "even" if i % 2 == 0 else "odd", "rank": i, "tags": ["a", f"t{i % 3}"]} for i in range(n)]
    store = factory()
    store.upsert(ids, vectors, payloads)
    return store, ids, vectors, payloads


def test_point_ids_are_uuid5_of_passage_id_in_a_fixed_namespace():
    assert POINT_ID_NAMESPACE == uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/ret2vqa/ret2vqa/passage")
    pid = point_id("https://en.wikipedia.org/wiki/Eiffel_Tower#2")
    assert pid == str(uuid.uuid5(POINT_ID_NAMESPACE, "https://en.wikipedia.org/wiki/Eiffel_Tower#2"))
    assert pid == point_id("https://en.wikipedia.org/wiki/Eiffel_Tower#2") != point_id("Eiffel_Tower#3")
    with pytest.raises(ValueError):
        point_id("")


def test_upsert_search_retrieve_payload_round_trip(backend):
    store, ids, vectors, payloads = filled(backend)
    with store:
        assert store.count() == len(ids)
        hits = store.search(vectors[7], k=5)
        assert hits[0].id == "doc-7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].payload == {**payloads[7], "passage_id": "doc-7"}
        assert hits[0].text == payloads[7].get("text", "") and hits[0].vector is None
        exact = np.argsort(-(vectors @ vectors[7]))[:5]
        assert [h.id for h in hits] == [ids[i] for i in exact]
        records = store.retrieve(["doc-3", "missing", "doc-1"], with_vectors=True)
        assert [r.id for r in records] == ["doc-3", "doc-1"]
        np.testing.assert_allclose(records[0].vector, vectors[3], atol=1e-6)
        assert records[1].payload["tags"] == ["a", "t1"]


def test_reupserting_the_same_passages_overwrites_instead_of_duplicating(backend):
    store, ids, vectors, _ = filled(backend)
    with store:
        store.upsert(ids[:10], vectors[10:20], [{"version": 2}] * 10)
        assert store.count() == len(ids)
        again = store.retrieve(["doc-0"], with_vectors=True)[0]
        assert again.payload == {"version": 2, "passage_id": "doc-0"}
        np.testing.assert_allclose(again.vector, vectors[10], atol=1e-6)


def test_batch_search_matches_single_searches(backend):
    store, _, vectors, _ = filled(backend)
    with store:
        batched = store.search_batch(vectors[:4], k=3)
        assert [[h.id for h in hits] for hits in batched] == [[h.id for h in store.search(v, k=3)] for v in vectors[:4]]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"group": "odd"}, lambda p: p["group"] == "odd"),
        ({"rank": [3, 4, 50]}, lambda p: p["rank"] in (3, 4, 50)),
        ({"rank": {"gte": 10, "lt": 20}}, lambda p: 10 <= p["rank"] < 20),
        ({"group": "even", "tags": "t1"}, lambda p: p["group"] == "even" and "t1" in p["tags"]),
    ],
)
def test_payload_filters_select_exactly_the_matching_points(backend, spec, expected):
    store, ids, vectors, payloads = filled(backend)
    with store:
        matching = {ids[i] for i, p in enumerate(payloads) if expected(p)}
        assert store.count(spec) == len(matching)
        hits = store.search(vectors[0], k=len(ids), filter=spec)
        assert {h.id for h in hits} == matching


def test_delete_removes_points(backend):
    store, ids, vectors, _ = filled(backend)
    with store:
        store.delete(["doc-1", "doc-2", "never-there"])
        assert store.count() == len(ids) - 2
        assert store.retrieve(["doc-1"]) == []
        assert all(h.id not in {"doc-1", "doc-2"} for h in store.search(vectors[1], k=10))


def test_state_records_round_trip_and_delete(backend):
    with backend() as store:
        assert store.load_state("ingest") is None
        store.save_state("ingest", {"abc": {"passages": 3}})
        store.save_state("other", {"x": 1})
        assert store.load_state("ingest") == {"abc": {"passages": 3}}
        store.save_state("ingest", None)
        assert store.load_state("ingest") is None and store.load_state("other") == {"x": 1}


def test_opening_with_another_encoder_or_dimension_is_refused(backend):
    backend().close()
    with pytest.raises(CollectionMismatchError, match="dimension 24 != 32"):
        backend(expect=CollectionMetadata(encoder_name="enc-a", encoder_revision="r1", encoder_fingerprint="f" * 16, dim=32))
    with pytest.raises(CollectionMismatchError, match="fingerprint mismatch"):
        backend(expect=CollectionMetadata(encoder_name="enc-a", encoder_revision="r1", encoder_fingerprint="0" * 16, dim=DIM))
    with pytest.raises(CollectionMismatchError, match="encoder 'enc-a' != 'enc-b'"):
        backend(expect=CollectionMetadata(encoder_name="enc-b", dim=DIM))
    # The same weights under another name (hub id vs local copy) are the same encoder.
    backend(expect=CollectionMetadata(encoder_name="/local/copy", encoder_fingerprint="f" * 16, dim=DIM)).close()


def test_missing_collection_and_bad_vectors_give_clear_errors(backend, tmp_path):
    with pytest.raises(CollectionNotFoundError, match="index build"):
        backend(expect=None, create=False, collection="nope")
    with backend() as store:
        with pytest.raises(CollectionMismatchError, match="dimension 8"):
            store.upsert(["a"], np.ones((1, 8), np.float32))
        with pytest.raises(ValueError, match="NaN"):
            store.upsert(["a"], np.full((1, DIM), np.nan, np.float32))
        with pytest.raises(ValueError, match="twice"):
            store.upsert(["a", "a"], clustered(2))
        with pytest.raises(CollectionMismatchError):
            store.search(np.ones(5, np.float32))


def test_filter_spec_validation():
    assert parse_filter(None) == []
    for bad in ({"x": 1.5}, {"x": []}, {"x": {"near": 3}}, {"x": ["a", 1]}, ["x"], {"x": {"gte": "a"}}):
        with pytest.raises(ValueError, match="filter"):
            parse_filter(bad)


def test_edge_collection_persists_on_disk_and_records_its_metadata(tmp_path):
    config = StoreConfig(path=str(tmp_path), collection="kb")
    vectors = clustered(30)
    with open_store(config, expect=META, create=True) as store:
        store.upsert([f"p{i}" for i in range(30)], vectors, [{"i": i} for i in range(30)])
    meta = json.loads((tmp_path / "kb" / "collection.json").read_text())
    assert (meta["encoder_name"], meta["dim"], meta["encoder_fingerprint"]) == ("enc-a", DIM, "f" * 16)
    assert meta["config"]["store"]["hnsw"]["m"] == config.hnsw.m and "api_key" not in meta["config"]["store"]
    with open_store(config) as store:  # no expectation: just open
        assert store.count() == 30 and store.metadata.encoder_revision == "r1"
        assert store.search(vectors[4], k=1)[0].id == "p4"
        with pytest.raises(StoreLockedError, match=rf"already open in this process \(pid {os.getpid()}\)"):
            open_store(config)
        peek = EdgeStore.peek(config)
        assert peek["metadata"]["dim"] == DIM and peek["count"] is None


def test_a_collection_open_in_another_process_raises_the_locked_error_naming_it(tmp_path):
    config = StoreConfig(path=str(tmp_path), collection="kb")
    open_store(config, expect=META, create=True).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom rag.store import StoreConfig, open_store\n"
         f"store = open_store(StoreConfig(path={str(tmp_path)!r}, collection='kb'))\n"
         "print('open', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError) as err:
            open_store(config)
        assert err.value.holder_pid == holder.pid and isinstance(err.value, StoreError)
        assert f"in use by another process (pid {holder.pid})" in str(err.value)
    finally:
        holder.communicate("", timeout=30)
    with open_store(config) as store:  # released when the holder ends
        assert store.count() == 0


def test_edge_hnsw_and_scalar_quantization_keep_recall(tmp_path):
    """With a tiny full-scan threshold the HNSW graph is really built and searched."""
    data = clustered(3000, dim=32, clusters=40, seed=1)
    queries = clustered(40, dim=32, clusters=40, seed=2)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    for quant in ("none", "scalar"):
        config = StoreConfig(
            path=str(tmp_path / quant), collection="kb", indexing_threshold_kb=1,
            hnsw=HnswSettings(m=16, ef_construct=100, hnsw_ef=64, full_scan_threshold_kb=1),
            quantization=QuantizationSettings(type=quant),
        )
        meta = CollectionMetadata(encoder_name="e", dim=32)
        with open_store(config, expect=meta, create=True) as store:
            store.upsert([str(i) for i in range(len(data))], data)
            store.optimize()
            assert store.info()["indexed_vectors"] == len(data)
            found = [[int(h.id) for h in hits] for hits in store.search_batch(queries, k=10)]
            recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
            assert recall >= 0.9, (quant, recall)
            exact_hits = store.search(queries[0], k=10, exact=True)
            assert [int(h.id) for h in exact_hits] == list(exact[0])
