"""Multivector (late-interaction) collections on both backends: MaxSim ranking, quantization, refusals.

Real stores on small data: Qdrant Edge in a temporary directory and ``QdrantClient(":memory:")``.
The ranking the store returns is compared with exact MaxSim over the same vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from rag.store import CollectionMetadata, CollectionMismatchError, QuantizationSettings, StoreConfig, open_store

DIM, TOKENS = 16, 5
META = CollectionMetadata(encoder_name="late", encoder_fingerprint="a" * 16, dim=DIM, multivector=True)


def token_sets(n: int, tokens: int = TOKENS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, DIM))
    rows = centres[rng.integers(0, 6, (n, tokens))] + 0.5 * rng.normal(size=(n, tokens, DIM))
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def exact_maxsim(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.einsum("qtd,nsd->qnts", q, d).max(-1).sum(-1)


@pytest.fixture(params=["edge", "server-local"])
def open_kb(request, tmp_path):
    if request.param == "edge":
        base = dict(path=str(tmp_path / "qdrant"), collection="kb")
        return lambda expect=META, **kw: open_store(StoreConfig(**{**base, **kw}), expect=expect, create=True)
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    base = dict(backend="server", url=":memory:", collection="kb")
    return lambda expect=META, **kw: open_store(StoreConfig(**{**base, **kw}), expect=expect, create=True,
                                                client=client)


def test_maxsim_ranking_equals_exact_maxsim(open_kb):
    docs, queries = token_sets(80), token_sets(6, tokens=3, seed=1)
    ids = [f"p{i}" for i in range(len(docs))]
    with open_kb() as store:
        store.upsert(ids, docs, [{"i": i} for i in range(len(docs))])
        assert store.metadata.multivector and store.count() == 80
        exact = exact_maxsim(queries, docs)
        hits = store.search_batch(queries, k=10, exact=True)
        for row, found in zip(exact, hits):
            assert [p.id for p in found] == [ids[j] for j in np.argsort(-row)[:10]]
            np.testing.assert_allclose([p.score for p in found], np.sort(row)[::-1][:10], atol=1e-4)
        single = store.search(queries[0], k=3)  # one query is a (T, dim) token set
        assert [p.id for p in single] == [p.id for p in hits[0][:3]]
        back = store.retrieve(["p7"], with_vectors=True)[0]
        np.testing.assert_allclose(back.vector, docs[7], atol=1e-6)


def test_quantized_multivectors_with_rescoring_keep_the_ranking(tmp_path):
    docs, queries = token_sets(300), token_sets(10, tokens=4, seed=2)
    quant = QuantizationSettings(type="scalar", rescore=True, oversampling=3.0)
    config = StoreConfig(path=str(tmp_path / "q"), collection="kb", quantization=quant)
    with open_store(config, expect=META, create=True) as store:
        store.upsert([f"p{i}" for i in range(len(docs))], docs)
        store.optimize()
        exact = exact_maxsim(queries, docs)
        hits = store.search_batch(queries, k=10)
        recall = np.mean([len({p.id for p in found} & {f"p{j}" for j in np.argsort(-row)[:10]}) / 10
                          for row, found in zip(exact, hits)])
        assert recall >= 0.9
        top_scores = [found[0].score for found in hits]  # rescored with the original vectors
        np.testing.assert_allclose(top_scores, exact.max(axis=1), atol=1e-3)


def test_single_vector_and_multivector_collections_refuse_each_other(open_kb):
    with open_kb():
        pass
    single = CollectionMetadata(encoder_name="late", encoder_fingerprint="a" * 16, dim=DIM)
    with pytest.raises(CollectionMismatchError, match="multivector .* collection != single-vector encoder"):
        open_kb(expect=single)
    with open_kb() as store:
        with pytest.raises(CollectionMismatchError, match="multivector"):
            store.upsert(["x"], token_sets(1)[:, 0])  # (1, dim): single vectors into a multivector collection
        with pytest.raises(CollectionMismatchError, match="dimension 8"):
            store.upsert(["x"], np.ones((1, TOKENS, 8), np.float32))
        with pytest.raises(CollectionMismatchError, match=r"one query is \(T, 16\)"):
            store.search(np.ones(DIM, np.float32))
