"""Vector-store benchmark: Qdrant Edge (embedded) vs qdrant-client local mode vs exact NumPy search.

::

    python bench/store.py --sizes 50000 --json OUT.json            # ~5 min on 2 cores
    python bench/store.py --sizes 50000 1000000 --json OUT.json    # the 1M size takes longer (HNSW build)
    python bench/store.py --sizes 50000 --quantization none scalar  # float vs int8 Qdrant Edge

For each size, on synthetic *clustered* 768-d embeddings (see :func:`clustered_embeddings`),
it measures, in one run and through the same :class:`rag.store.VectorStore` API the
pipeline uses:

* ``upsert_per_s``: points inserted per second (batches of 1,000, flushed to disk);
* ``build_s``: index build time (Qdrant Edge ``optimize()``: the HNSW graph);
* ``p50_ms`` / ``p95_ms``: latency of single top-10 queries, one at a time;
* ``recall_at_10``: overlap of the top 10 with the exact top 10 (NumPy), averaged.

Backends: ``edge`` (Qdrant Edge with the HNSW settings given and the store's default
quantization; other variants are named ``edge-none`` / ``edge-scalar``), ``local`` (qdrant-client
``":memory:"`` local mode; only up to ``--local-max`` points, it is brute force in Python)
and ``exact`` (NumPy matrix product + ``argpartition``; the ground truth and the
baseline). Queries are fresh draws from the same distribution, never copies of indexed
points. The JSON written with ``--json`` is a list with one object per (size, backend)
holding at least ``{"backend", "n", "upsert_per_s", "build_s", "p50_ms", "p95_ms",
"recall_at_10"}``; edge rows also carry an ``ef_sweep`` (recall and latency per
``hnsw_ef``).

``--multivector`` benchmarks late-interaction collections instead (a ReT encoder's
output: ``--tokens`` x ``--dim`` unit vectors per passage and per query, default 32 x 128,
ranked by MaxSim): the same rows and columns, with recall@10 against *exact MaxSim*
(NumPy), plus ``bytes_per_passage`` (on disk) and ``ram_bytes_per_passage`` (what a
search keeps in RAM: the int8 codes with quantization, else the float vectors, plus the
HNSW links). Defaults are modest (5,000 passages, 100 queries, the store's HNSW defaults
as in ``configs/retrievers/``; about 5 minutes on 2 cores, most of it the HNSW build);
the issue's 100K x 32 x 128 is ``--sizes 100000`` on a bigger machine::

    python bench/store.py --multivector --json OUT.json
    python bench/store.py --multivector --sizes 100000 --queries 200 --json OUT.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.store import CollectionMetadata, HnswSettings, QuantizationSettings, StoreConfig, open_store  # noqa: E402

K = 10
BATCH = 1000


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


class ClusteredEmbeddings:
    """A fixed random distribution of "real-like" unit vectors, sampled in chunks.

    Real retrieval embeddings are clustered (topics, entities) and each cluster varies
    along few directions (low intrinsic dimension), with some isotropic noise on top.
    We draw: a cluster ``c`` (``clusters`` of them, Zipf-like sizes), a point
    ``mu_c + B_c z`` with ``z ~ N(0, I_r)`` in a random ``r``-dimensional subspace
    ``B_c`` of that cluster (``r = intrinsic_dim``), plus ``noise * N(0, I_d) / sqrt(d)``,
    then L2-normalise. Centroids share a common mean direction (embeddings are
    anisotropic: random pairs have positive cosine, as with CLIP-like models).
    """

    def __init__(self, dim: int = 768, clusters: int = 2000, intrinsic_dim: int = 64, spread: float = 0.6,
                 noise: float = 0.5, seed: int = 0):
        self.dim, self.clusters, self.intrinsic_dim = dim, clusters, intrinsic_dim
        self.spread, self.noise, self.seed = spread, noise, seed
        rng = np.random.default_rng(seed)
        common = rng.normal(size=dim)
        common /= np.linalg.norm(common)
        centres = rng.normal(size=(clusters, dim)) / np.sqrt(dim)
        self.centres = (centres + 0.5 * common).astype(np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        # One random basis per cluster (r x d), scaled so the within-cluster spread is `spread`.
        self.bases = (rng.normal(size=(clusters, intrinsic_dim, dim)) / np.sqrt(dim)).astype(np.float32)
        weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
        self.weights = weights / weights.sum()

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        labels = rng.choice(self.clusters, size=n, p=self.weights)
        z = rng.normal(size=(n, self.intrinsic_dim)).astype(np.float32) * (self.spread / np.sqrt(self.intrinsic_dim))
        x = self.centres[labels].copy()
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        for group in np.split(order, bounds):  # one small matmul per cluster present
            x[group] += z[group] @ self.bases[labels[group[0]]]
        x += rng.normal(size=(n, self.dim)).astype(np.float32) * (self.noise / np.sqrt(self.dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    def describe(self) -> dict:
        return {"dim": self.dim, "clusters": self.clusters, "intrinsic_dim": self.intrinsic_dim, "spread": self.spread,
                "noise": self.noise, "seed": self.seed}


def generate(dist: ClusteredEmbeddings, n: int, chunk: int = 50_000) -> np.ndarray:
    out = np.empty((n, dist.dim), dtype=np.float32)
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(n, start + chunk)
        out[start:stop] = dist.sample(stop - start, seed=dist.seed * 1_000_003 + i + 1)
    return out


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int = K, block: int = 64) -> np.ndarray:
    """Exact top-k ids (by inner product = cosine on unit vectors), best first."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ data.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K].tolist())) / K for f, t in zip(found, truth)]))


def percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(latencies_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean())


def data_stats(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, len(data), 2000), rng.integers(0, len(data), 2000)
    q = queries[:200]
    top = np.take_along_axis(q @ data.T, truth[:200], axis=1)
    return {
        "mean_random_pair_cosine": round(float(np.mean(np.sum(data[a] * data[b], axis=1))), 3),
        "mean_top1_cosine": round(float(top[:, 0].mean()), 3),
        "mean_top10_cosine": round(float(top[:, 9].mean()), 3),
    }


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------


def fill(store, data: np.ndarray, progress: str) -> float:
    """Upsert ``data`` in batches through the VectorStore API; returns seconds (incl. final flush)."""
    t0 = time.perf_counter()
    for start in range(0, len(data), BATCH):
        stop = min(len(data), start + BATCH)
        store.upsert([str(i) for i in range(start, stop)], data[start:stop])
        if (start // BATCH) % 100 == 0:
            print(f"  {progress}: upserted {stop:,}/{len(data):,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    store.flush()
    return time.perf_counter() - t0


def time_queries(search, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    found, latencies = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = search(q)
        latencies.append(time.perf_counter() - t0)
        found.append([int(h.id) for h in hits])
    return found, latencies


def row(backend: str, n: int, upsert_s: float, build_s: float, lat: list[float], rec: float, **extra) -> dict:
    p50, p95, mean = percentiles(lat)
    return {"backend": backend, "n": n, "upsert_per_s": round(n / upsert_s, 1) if upsert_s > 0 else None,
            "build_s": round(build_s, 2), "p50_ms": round(p50, 3), "p95_ms": round(p95, 3),
            "recall_at_10": round(rec, 4), "mean_ms": round(mean, 3), "n_queries": len(lat), **extra}


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """The indices of the ``k`` highest ``scores``, best first."""
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def bench_exact(data, queries, truth, n_queries) -> dict:
    t0 = time.perf_counter()
    matrix = np.ascontiguousarray(data, dtype=np.float32).copy()  # "upsert" = holding the vectors in one array
    upsert_s = time.perf_counter() - t0
    lat, found = [], []
    for q in queries[:n_queries]:
        t0 = time.perf_counter()
        ids = top_k(matrix @ q)
        lat.append(time.perf_counter() - t0)
        found.append(ids.tolist())
    return row("exact", len(data), upsert_s, 0.0, lat, recall(found, truth[:n_queries]), method="numpy matmul + argpartition")


@contextmanager
def built_edge_collection(data: np.ndarray, args, workdir: Path, name: str, quantization: str,
                          meta: CollectionMetadata) -> Iterator[tuple[Any, StoreConfig, float, float]]:
    """A new Qdrant Edge collection holding ``data`` with its HNSW index built (the bench's settings):
    yields ``(store, config, upsert seconds, build seconds)``; the collection is deleted afterwards."""
    config = StoreConfig(
        path=str(workdir), collection=f"{name}-{len(data)}",
        hnsw=HnswSettings(m=args.m, ef_construct=args.ef_construct, hnsw_ef=args.hnsw_ef),
        quantization=QuantizationSettings(type=quantization), default_segment_number=args.segments,
    )
    with open_store(config, expect=meta, create=True) as store:
        upsert_s = fill(store, data, name)
        print(f"  {name}: building the HNSW index over {len(data):,} points ...", flush=True)
        t0 = time.perf_counter()
        store.optimize()
        build_s = time.perf_counter() - t0
        print(f"  {name}: built in {build_s:.1f} s ({store.info()['indexed_vectors']:,} vectors indexed)", flush=True)
        yield store, config, upsert_s, build_s
    shutil.rmtree(workdir / config.collection, ignore_errors=True)


def bench_edge(data, queries, truth, args, workdir: Path, quantization: str) -> dict:
    name = "edge" if quantization == QuantizationSettings.type else f"edge-{quantization}"
    meta = CollectionMetadata(encoder_name="synthetic", dim=data.shape[1])
    with built_edge_collection(data, args, workdir, name, quantization, meta) as (store, config, upsert_s, build_s):
        info = store.info()
        print(f"  {name}: {info['segments']} segments", flush=True)
        for q in queries[:20]:  # warm-up
            store.search(q, k=K)
        sweep = []
        main = None
        for ef in sorted(set(args.ef_sweep) | {args.hnsw_ef}):
            found, lat = time_queries(lambda q, ef=ef: store.search(q, k=K, hnsw_ef=ef), queries)
            p50, p95, _ = percentiles(lat)
            entry = {"hnsw_ef": ef, "p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "recall_at_10": round(recall(found, truth), 4)}
            sweep.append(entry)
            print(f"  {name}: hnsw_ef={ef:<4} p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  recall@10 {entry['recall_at_10']:.4f}", flush=True)
            if ef == args.hnsw_ef:
                main = (found, lat)
        disk = sum(f.stat().st_size for f in (workdir / config.collection).rglob("*") if f.is_file())
    return row(name, len(data), upsert_s, build_s, main[1], recall(main[0], truth), m=args.m,
               ef_construct=args.ef_construct, hnsw_ef=args.hnsw_ef, quantization=quantization,
               segments=info["segments"], disk_mb=round(disk / 2**20, 1), ef_sweep=sweep)


def bench_local(data, queries, truth, n_queries) -> dict:
    import warnings

    config = StoreConfig(backend="server", url=":memory:", collection="local")
    meta = CollectionMetadata(encoder_name="synthetic", dim=data.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_store(config, expect=meta, create=True) as store:
            upsert_s = fill(store, data, "local")
            found, lat = time_queries(lambda q: store.search(q, k=K), queries[:n_queries])
    return row("local", len(data), upsert_s, 0.0, lat, recall(found, truth[:n_queries]),
               method="qdrant-client QdrantClient(':memory:')")


# ---------------------------------------------------------------------------------------
# Multivector (late interaction, MaxSim)
# ---------------------------------------------------------------------------------------


def multivector_sample(dist: ClusteredEmbeddings, n: int, tokens: int, token_spread: float, seed: int) -> np.ndarray:
    """``(n, tokens, dim)`` unit token vectors: each item's tokens vary around one clustered draw."""
    rng = np.random.default_rng(seed)
    base = dist.sample(n, seed=seed)
    out = base[:, None, :] + rng.normal(size=(n, tokens, dist.dim)).astype(np.float32) * (token_spread / np.sqrt(dist.dim))
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return out.astype(np.float32)


def maxsim_all(data: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact MaxSim of one ``(Tq, D)`` query against every ``(T, D)`` item of ``data``: ``(n,)``."""
    n, t, d = data.shape
    token_scores = (data.reshape(n * t, d) @ query.T).reshape(n, t, -1)
    return token_scores.max(axis=1).sum(axis=1)


def exact_maxsim_topk(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        out[i] = top_k(maxsim_all(data, q), k)
    return out


def bench_multivector_exact(data, queries, truth, n_queries) -> dict:
    lat, found = [], []
    for q in queries[:n_queries]:
        t0 = time.perf_counter()
        found.append(top_k(maxsim_all(data, q)).tolist())
        lat.append(time.perf_counter() - t0)
    n, t, d = data.shape
    return row("exact", n, 0.0, 0.0, lat, recall(found, truth[:n_queries]), method="numpy MaxSim (matmul + max + sum)",
               bytes_per_passage=t * d * 4, ram_bytes_per_passage=t * d * 4)


def bench_multivector_edge(data, queries, truth, args, workdir: Path, quantization: str) -> dict:
    name = "edge-mv" if quantization == QuantizationSettings.type else f"edge-mv-{quantization}"
    n, t, d = data.shape
    meta = CollectionMetadata(encoder_name="synthetic-late-interaction", dim=d, multivector=True)
    with built_edge_collection(data, args, workdir, name, quantization, meta) as (store, config, upsert_s, build_s):
        for q in queries[:5]:  # warm-up
            store.search(q, k=K)
        found, lat = time_queries(lambda q: store.search(q, k=K), queries)
        disk = sum(f.stat().st_size for f in (workdir / config.collection).rglob("*") if f.is_file())
    vectors_in_ram = t * d * (1 if quantization == "scalar" else 4)
    graph = 2 * args.m * 4  # level-0 links of one point (upper levels add ~1/m of that)
    return row(name, n, upsert_s, build_s, lat, recall(found, truth), m=args.m, ef_construct=args.ef_construct,
               hnsw_ef=args.hnsw_ef, quantization=quantization, tokens=t, disk_mb=round(disk / 2**20, 1),
               bytes_per_passage=round(disk / n), ram_bytes_per_passage=vectors_in_ram + graph)


def run_multivector(args, workdir: Path, env: dict) -> list[dict]:
    dist = ClusteredEmbeddings(dim=args.dim, clusters=args.clusters, intrinsic_dim=args.intrinsic_dim,
                               spread=args.spread, noise=args.noise, seed=args.seed)
    queries = multivector_sample(dist, args.queries, args.tokens, args.token_spread, seed=10**9 + args.seed)
    print(f"multivector data: {dist.describe()}, {args.tokens} tokens per item; {args.queries} queries; "
          f"machine: {env}", flush=True)
    results: list[dict] = []
    for n in args.sizes:
        print(f"\n== n = {n:,} passages x {args.tokens} x {args.dim} ==", flush=True)
        t0 = time.perf_counter()
        data = np.concatenate([multivector_sample(dist, min(5000, n - s), args.tokens, args.token_spread,
                                                  seed=args.seed * 1_000_003 + s + 1) for s in range(0, n, 5000)])
        truth = exact_maxsim_topk(data, queries)
        print(f"  data + exact MaxSim ground truth in {time.perf_counter() - t0:.0f} s", flush=True)
        size_rows = []
        if "exact" not in args.skip:
            size_rows.append(bench_multivector_exact(data, queries, truth, min(args.exact_queries, args.queries)))
        if "edge" not in args.skip:
            for quantization in args.quantization or [QuantizationSettings.type]:
                size_rows.append(bench_multivector_edge(data, queries, truth, args, workdir, quantization))
        for r in size_rows:
            r.update({"dim": args.dim, "multivector": True, "tokens": args.tokens, "machine": env})
        results.extend(size_rows)
        print_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        del data, truth
        gc.collect()
    return results


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="collection sizes (default 50000; 5000 with --multivector)")
    parser.add_argument("--json", metavar="OUT", help="write the results as a JSON list")
    parser.add_argument("--queries", type=int, default=None,
                        help="queries per size (edge and ground truth; default 1000, 100 with --multivector)")
    parser.add_argument("--exact-queries", type=int, default=200, help="queries timed for the exact baseline")
    parser.add_argument("--local-queries", type=int, default=50, help="queries timed for local mode (slow)")
    parser.add_argument("--local-max", type=int, default=50_000, help="largest size run in local mode")
    parser.add_argument("--dim", type=int, default=None, help="vector width (default 768; 128 with --multivector)")
    parser.add_argument("--multivector", action="store_true",
                        help="late-interaction collections: --tokens vectors per passage and query, MaxSim ranking")
    parser.add_argument("--tokens", type=int, default=32, help="vectors per item with --multivector (default 32)")
    parser.add_argument("--token-spread", type=float, default=0.8,
                        help="spread of an item's tokens around its draw (--multivector)")
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--intrinsic-dim", type=int, default=64, help="directions of variation within a cluster")
    parser.add_argument("--spread", type=float, default=0.6, help="within-cluster spread (norm) along them")
    parser.add_argument("--noise", type=float, default=0.5, help="isotropic noise (norm) on top")
    parser.add_argument("--m", type=int, default=HnswSettings.m)
    parser.add_argument("--ef-construct", type=int, default=HnswSettings.ef_construct)
    parser.add_argument("--hnsw-ef", type=int, default=HnswSettings.hnsw_ef)
    parser.add_argument("--ef-sweep", type=int, nargs="*", default=[32, 64, 128, 256])
    parser.add_argument("--segments", type=int, default=None, help="optimizer default_segment_number (default: Qdrant's)")
    parser.add_argument("--quantization", nargs="+", choices=["none", "scalar"], default=None,
                        help="Qdrant Edge variants to run: float vectors (none) and/or int8 scalar quantization "
                             f"(default: the store default, {QuantizationSettings.type})")
    parser.add_argument("--skip", nargs="*", default=[], choices=["edge", "local", "exact"], help="backends to skip")
    parser.add_argument("--workdir", help="where Qdrant Edge collections are built (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([5_000] if args.multivector else [50_000])
    args.queries = args.queries or (100 if args.multivector else 1000)
    args.dim = args.dim or (128 if args.multivector else 768)
    if args.multivector:
        env = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ret2vqa-bench-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            results = run_multivector(args, workdir, env)
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        print_table(results, final=True)
        return 0

    dist = ClusteredEmbeddings(dim=args.dim, clusters=args.clusters, intrinsic_dim=args.intrinsic_dim, spread=args.spread,
                               noise=args.noise, seed=args.seed)
    queries = dist.sample(args.queries, seed=10**9 + args.seed)  # fresh draws, never indexed points
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ret2vqa-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    print(f"data: {dist.describe()}; {args.queries} queries; machine: {env}", flush=True)
    results: list[dict] = []
    try:
        for n in args.sizes:
            print(f"\n== n = {n:,} ==", flush=True)
            t0 = time.perf_counter()
            data = generate(dist, n)
            truth = exact_topk(data, queries)
            stats = data_stats(data, queries, truth)
            print(f"  data + ground truth in {time.perf_counter() - t0:.0f} s; {stats}", flush=True)
            common = {"dim": args.dim, "data": {**dist.describe(), **stats}, "machine": env}
            size_rows = []
            if "exact" not in args.skip:
                size_rows.append(bench_exact(data, queries, truth, min(args.exact_queries, args.queries)))
            if "edge" not in args.skip:
                for quantization in args.quantization or [QuantizationSettings.type]:
                    size_rows.append(bench_edge(data, queries, truth, args, workdir, quantization))
            if "local" not in args.skip and n <= args.local_max:
                size_rows.append(bench_local(data, queries, truth, min(args.local_queries, args.queries)))
            for r in size_rows:
                r.update(common)
            results.extend(size_rows)
            print_table(results)
            if args.json:  # written after every size, so a long run keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1))
            del data, truth
            gc.collect()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, final=True)
    return 0


def print_table(results: list[dict], final: bool = False) -> None:
    if not results:
        return
    print("\n" + ("results" if final else "so far") + ":")
    print(f"{'backend':<12} {'n':>10} {'upsert/s':>12} {'build s':>9} {'p50 ms':>9} {'p95 ms':>9} {'recall@10':>10} {'queries':>8}")
    for r in results:
        ups = f"{r['upsert_per_s']:,.0f}" if r["upsert_per_s"] else "-"
        print(f"{r['backend']:<12} {r['n']:>10,} {ups:>12} {r['build_s']:>9.1f} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} "
              f"{r['recall_at_10']:>10.4f} {r['n_queries']:>8}")
    by = {(r["backend"], r["n"]): r for r in results}

    def compare(speedup: float, digits: int) -> str:
        return f"{speedup:.{digits}f}x faster" if speedup >= 1 else f"{1 / speedup:.{digits}f}x slower"

    for r in results:
        if r.get("multivector") and r["backend"] != "exact":
            print(f"n={r['n']:,} {r['backend']}: {r['bytes_per_passage']:,} B/passage on disk, "
                  f"~{r['ram_bytes_per_passage']:,} B/passage in RAM")
    for n in sorted({r["n"] for r in results}):
        edge = by.get(("edge", n)) or by.get(("edge-mv", n))
        local, exact = by.get(("local", n)), by.get(("exact", n))
        if edge and local:
            print(f"n={n:,}: Qdrant Edge p50 is {compare(local['p50_ms'] / edge['p50_ms'], 0)} than local mode "
                  f"(upsert {compare(edge['upsert_per_s'] / local['upsert_per_s'], 1)})")
        if edge and exact:
            print(f"n={n:,}: Qdrant Edge p50 is {compare(exact['p50_ms'] / edge['p50_ms'], 1)} than exact NumPy search")


if __name__ == "__main__":
    sys.exit(main())
