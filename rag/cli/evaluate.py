"""``ret2vqa eval {infoseek,evqa}``: run retrieval + generation over a benchmark split and score it."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run the pipeline over an E-VQA / InfoSeek split: predictions, recall@k, accuracy, report",
        description=(
            "Retrieve and answer every question of a benchmark split, then score it. Writes to --out: "
            "predictions.jsonl (the format `ret2vqa score` reads), retrieval.jsonl (rankings), metrics.json "
            "(answer accuracy with the official metric, recall@k, timings), report.md and recall_at_k.png. "
            "Resumable: a rerun skips the questions already answered in --out."
        ),
    )
    parser.add_argument("benchmark", choices=["infoseek", "evqa"])
    parser.add_argument("--config", help="pipeline YAML (default: the CPU preset, configs/cpu.yaml)")
    parser.add_argument("--questions", required=True,
                        help="infoseek: infoseek_{val,test}.jsonl; evqa: the official {val,test}.csv")
    parser.add_argument("--images", required=True,
                        help="infoseek: OVEN images (sharded NN/ or flat); evqa: <dir>/<image_id>.jpg, or "
                             "inaturalist/ + landmarks/ in the official layouts")
    parser.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("-k", "--k", type=int, help="passages given to the generator (default: retrieval.k)")
    parser.add_argument("--depth", type=int, help="retrieval depth for recall@k (default: max(k, 20))")
    parser.add_argument("--ks", default="1,5,10,20", help="recall cut-offs, comma-separated (default 1,5,10,20)")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per retrieval/generation step")
    parser.add_argument("--missing-images", choices=["error", "text_only"], default="error",
                        help="a question whose image file is missing: stop (default) or answer without it")
    parser.add_argument("--lenient", action="store_true",
                        help="report and skip malformed question rows instead of stopping")
    parser.add_argument("--qtype", help="infoseek: *_qtype.jsonl (default: next to --questions)")
    parser.add_argument("--withkb", help="infoseek: *_withkb.jsonl for entity recall (default: next to --questions)")
    parser.add_argument("--inat-id2name", help="evqa: iNaturalist id → file name JSON (or the COCO annotation file)")
    parser.add_argument("--single-hop", action="store_true", help="evqa: skip 2_hop questions")
    parser.add_argument("--bem", help="evqa: BEM model (hub id or local dir) for the official metric")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rag.benchmark import load_evqa, load_infoseek, run_benchmark
    from rag.pipeline import Pipeline

    ks = [int(x) for x in args.ks.split(",") if x.strip()]
    if args.benchmark == "infoseek":
        benchmark = load_infoseek(args.questions, args.images, args.qtype, args.withkb, args.limit,
                                  args.missing_images, strict=not args.lenient)
    else:
        benchmark = load_evqa(args.questions, args.images, args.inat_id2name, args.limit, args.missing_images,
                              args.single_hop, args.bem, strict=not args.lenient)
    with Pipeline.from_config(args.config) as pipeline:
        metrics = run_benchmark(pipeline, benchmark, args.out, k=args.k, depth=args.depth,
                                batch_size=args.batch_size, ks=ks, show_progress=not args.no_progress)
    print(json.dumps(metrics, indent=2))
    return 0
