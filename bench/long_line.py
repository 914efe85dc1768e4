"""Indexing cost of one runaway knowledge-base line: bounded by ``ingest.max_text_chars``.

::

    python bench/long_line.py --json OUT.json                       # 1 MB vs 10 MB line, InfoSeek format
    python bench/long_line.py --sizes-mb 1 10 50 --format jsonl

Each variant is a KB of one line whose text is ``S`` MB of words (one sentence: the worst
case for the chunker), plus one short line, indexed with the tiny random encoder into a
fresh embedded collection, in a fresh process (so peak memory is that run's). The first
size is the baseline; the table gives each size's wall time and peak RSS growth, and the
ratio to the baseline. With ``ingest.max_text_chars`` (default 1,000,000 characters) every
line over it is cut before chunking, so the ratios stay near 1.0 however long the line is
(before the cut, a 10 MB line took 36 s and 4.4 GB). The JSON is a list of
``{"size_mb", "format", "seconds", "peak_rss_growth_mb", "passages", "time_ratio",
"memory_ratio"}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(size_mb: float, fmt: str, workdir: Path, max_text_chars: int | None) -> dict:
    """Index one generated KB in this process; report time, peak RSS growth and passages."""
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)  # the cut is announced once per line: not what is measured
    from rag.config import PipelineConfig
    from rag.ingest.indexer import build_index

    text = ("lorem ipsum dolor sit amet consectetur " * (int(size_mb * 1e6) // 39 + 1))[: int(size_mb * 1e6)]
    kb = workdir / f"kb-{size_mb}.jsonl"
    with open(kb, "w", encoding="utf-8") as fh:
        if fmt == "infoseek":
            fh.write(json.dumps({"wikidata_id": "Q1", "wikipedia_title": "Long", "wikipedia_content": text}) + "\n")
            fh.write(json.dumps({"wikidata_id": "Q2", "wikipedia_title": "Short", "wikipedia_content": "A short one."})
                     + "\n")
        else:
            fh.write(json.dumps({"id": "long", "text": text}) + "\n")
            fh.write(json.dumps({"id": "short", "text": "A short one."}) + "\n")
    del text
    ingest = {"batch_size": 256, "count_records": False}
    if max_text_chars:
        ingest["max_text_chars"] = max_text_chars
    config = PipelineConfig.from_dict({
        "encoder": {"name_or_path": "tiny-random/clip", "device": "cpu"},
        "store": {"path": str(workdir / f"store-{size_mb}"), "collection": "kb",
                  "hnsw": {"m": 16, "ef_construct": 64, "hnsw_ef": 64}},
        "ingest": ingest,
    }, where="bench")
    from rag.components import build_encoder

    encoder = build_encoder(config.encoder)  # loading the model is not what is measured
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    report = build_index(config, kb, fmt, encoder=encoder, show_progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size_mb": size_mb, "format": fmt, "seconds": round(seconds, 3),
            "peak_rss_growth_mb": round((peak - base) / 1024, 1), "passages": report.passages_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[1.0, 10.0],
                        help="line sizes in MB; the first is the baseline (default 1 10)")
    parser.add_argument("--format", choices=["infoseek", "jsonl"], default="infoseek")
    parser.add_argument("--max-text-chars", type=int, help="ingest.max_text_chars (default: the config's)")
    parser.add_argument("--json", metavar="OUT.json", help="write the rows here")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.format, Path(args.workdir), args.max_text_chars)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes_mb:
            command = [sys.executable, __file__, "--child", str(size), "--format", args.format, "--workdir", workdir]
            if args.max_text_chars:
                command += ["--max-text-chars", str(args.max_text_chars)]
            run = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            if run.returncode != 0:
                print(run.stderr, file=sys.stderr)
                return run.returncode
            rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for row in rows:
        row["time_ratio"] = round(row["seconds"] / max(base["seconds"], 1e-9), 2)
        row["memory_ratio"] = round(max(row["peak_rss_growth_mb"], 1.0) / max(base["peak_rss_growth_mb"], 1.0), 2)
    print(f"{'line MB':>8} {'format':>9} {'passages':>9} {'seconds':>8} {'x base':>7} {'peak RSS MB':>12} {'x base':>7}")
    for row in rows:
        print(f"{row['size_mb']:>8g} {row['format']:>9} {row['passages']:>9} {row['seconds']:>8.2f} "
              f"{row['time_ratio']:>7.2f} {row['peak_rss_growth_mb']:>12.1f} {row['memory_ratio']:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
