"""LangChain retrieval: what batching saves, and where a chain keeps it, in one run.

The bundled demo knowledge base is indexed with the configured encoder (default: the tiny
random ReT-2 of ``configs/tiny.yaml``; pass ``--config`` for a real one) into a temporary
store, then the same queries (text and text+image, cycling over the demo questions) are
retrieved five ways:

* ``invoke-loop``: ``retriever.invoke`` once per query (the baseline);
* ``batch``: ``retriever.batch(queries)``: one encoder pass, one batched search;
* ``abatch``: the same from async code;
* ``dict-step``: ``{"context": retriever, "question": ...}.batch(queries)``: LangChain runs
  a dict (``RunnableParallel``) per item, so the retriever embeds one query per call;
* ``RetrieveSources``: ``RetrieveSources(retriever).batch(queries)``, the batched step
  ``build_answer_chain`` uses.

Each variant's time is the median over ``--rounds`` (variants shuffled per round) and its
ratio is that over ``invoke-loop``'s; ``encoder_calls`` counts the encoder passes.

    OMP_WAIT_POLICY=PASSIVE python bench/langchain.py --queries 64 --json OUT.json

On a machine whose cores are shared with other work, OpenMP's busy-waiting makes torch calls
from the main thread many times slower than the same calls from a worker thread (which
distorts the ``invoke-loop`` baseline): ``OMP_WAIT_POLICY=PASSIVE`` avoids that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="pipeline config (default: the tiny random encoder)")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    from langchain_core.runnables import RunnableLambda

    from rag.config import load_pipeline_config
    from rag.demo import DEMO_DIR, KB_FILE
    from rag.ingest.indexer import build_index
    from rag.langchain import ReT2Retriever, RetrieveSources

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_pipeline_config(args.config or "configs/tiny.yaml")
        cfg = cfg.override({"store.backend": "edge", "store.path": str(Path(tmp) / "qdrant"), "store.collection": "kb",
                            "ingest.image_root": str(DEMO_DIR)})
        build_index(cfg, KB_FILE, "jsonl", show_progress=False)
        images = sorted(str(p) for p in (DEMO_DIR / "images").glob("*.jpg"))
        questions = ["Which satellite did this rocket launch?", "Who is this?", "What is in the cup?",
                     "Which telescope took this picture?"]
        queries = [questions[i % len(questions)] if i % 2 else {"question": questions[i % len(questions)],
                                                               "image": images[i % len(images)]}
                   for i in range(args.queries)]
        with ReT2Retriever.from_config(cfg, k=5) as retriever:
            encoder = retriever.pipeline.encoder
            calls = {"n": 0}
            real = encoder.encode_queries

            def counting(*a, **kw):
                calls["n"] += 1
                return real(*a, **kw)

            encoder.encode_queries = counting
            dict_step = {"context": retriever, "question": RunnableLambda(lambda q: q)}
            dict_chain = RunnableLambda(lambda q: q) | dict_step
            variants = {
                "invoke-loop": lambda: [retriever.invoke(q) for q in queries],
                "batch": lambda: retriever.batch(queries),
                "abatch": lambda: asyncio.run(retriever.abatch(queries)),
                "dict-step": lambda: dict_chain.batch(queries),
                "RetrieveSources": lambda: RetrieveSources(retriever).batch(queries),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            encoder_calls: dict[str, int] = {}
            variants["batch"]()  # warm-up
            for _ in range(args.rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    calls["n"] = 0
                    start = time.perf_counter()
                    variants[name]()
                    times[name].append((time.perf_counter() - start) * 1000.0)
                    encoder_calls[name] = calls["n"]
            encoder.encode_queries = real

    base = statistics.median(times["invoke-loop"])
    rows = [{"variant": name, "ms": round(statistics.median(ms), 1), "ratio": round(statistics.median(ms) / base, 3),
             "encoder_calls": encoder_calls[name], "rounds_ms": [round(t, 1) for t in ms]}
            for name, ms in times.items()]
    print(f"{args.queries} queries, encoder {cfg.encoder.name_or_path}, median of {args.rounds} rounds")
    print(f"{'variant':<16} {'ms':>10} {'x invoke-loop':>14} {'encoder calls':>14}")
    for row in rows:
        print(f"{row['variant']:<16} {row['ms']:>10.1f} {row['ratio']:>14.3f} {row['encoder_calls']:>14}")
    if args.json:
        result = {"queries": args.queries, "rounds": args.rounds, "encoder": cfg.encoder.name_or_path,
                  "platform": platform.platform(),
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "variants": rows}
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
