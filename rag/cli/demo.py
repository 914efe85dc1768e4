"""``ret2vqa demo``: index the bundled knowledge base and answer a few visual questions with sources."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ret2vqa.argtypes import int_arg

TINY_BANNER = ("NOTE: --tiny uses tiny RANDOMLY INITIALISED models built offline from transformers config classes. "
               "The whole pipeline runs for real, but rankings and answers are MEANINGLESS.")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="first run: build the bundled KB into the embedded store, then answer visual questions with sources",
        description=(
            "Index the small bundled knowledge base (36 encyclopedic passages, 7 public-domain images) into the "
            "embedded Qdrant store, then ask a handful of questions about the images and print each answer with "
            "its top passages, scores and per-stage timings. Real models by default (the CPU preset, "
            "configs/cpu.yaml); --tiny runs the same flow with tiny random models and no downloads."
        ),
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random models, fully offline (answers meaningless)")
    parser.add_argument("--config", help="pipeline YAML (default: configs/cpu.yaml, or configs/tiny.yaml with --tiny)")
    parser.add_argument("--store", help="store directory (default: the config's store.path, e.g. data/qdrant for "
                                        "configs/cpu.yaml, so that `ret2vqa ask --config configs/cpu.yaml` finds it)")
    parser.add_argument("-k", "--k", type=int_arg(min=0), help="passages given to the generator (default: retrieval.k)")
    parser.add_argument("--show", type=int_arg(min=0), default=3, help="passages printed per question (default 3)")
    parser.add_argument("--questions", type=int_arg(min=1), help="ask only the first N demo questions")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rag.config import PipelineConfig, default_config_path
    from rag.demo import DEMO_DIR, KB_FILE, QUESTIONS_FILE
    from rag.diagnostics import fetch_missing, missing_models_message, model_statuses
    from ret2vqa.config import ConfigError
    from ret2vqa.io import iter_jsonl

    config_path = args.config or str(default_config_path("tiny" if args.tiny else "cpu"))
    cfg = PipelineConfig.from_yaml(config_path)
    if cfg.generator is None:
        raise ConfigError(f"{config_path}: the demo needs a generator section")
    if not cfg.encoder.given:
        raise ConfigError(f"{config_path}: the demo indexes its knowledge base, so it needs an encoder",
                          "encoder.name_or_path")
    message = missing_models_message(fetch_missing(model_statuses(cfg)), config_path)
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 2
    # The demo fills the collection the config (a preset) names, so `ask`/`search --config` with the
    # same preset answer from it afterwards: the README's first session.
    cfg = cfg.override({"store.backend": "edge" if args.store else None, "store.path": args.store,
                        "ingest.image_root": str(DEMO_DIR)})
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    if args.tiny:
        log(TINY_BANNER)

    import torch

    from rag.cli.ask import format_answer
    from rag.components import build_encoder
    from rag.ingest.indexer import build_index
    from rag.pipeline import Pipeline
    from ret2vqa.errors import CollectionMismatchError

    if args.tiny:
        torch.set_num_threads(1)  # tiny models: thread start-up costs more than the work
    log(f"[1/3] loading the encoder ({cfg.encoder.name_or_path}) ...")
    t0 = time.perf_counter()
    encoder = build_encoder(cfg.encoder)
    log(f"[2/3] indexing {KB_FILE.name} into {cfg.store.describe()} ...")
    try:
        report = build_index(cfg, KB_FILE, "jsonl", encoder=encoder, show_progress=not args.json)
    except CollectionMismatchError as exc:  # e.g. the demo run by an earlier version, whose tiny models differed
        raise CollectionMismatchError(
            f"{exc} The demo fills {cfg.store.describe()}: if it holds only an earlier demo run, delete "
            f"{cfg.store.path} and run the demo again, or pass --store with another directory.") from None
    index_s = time.perf_counter() - t0
    log(f"      {report.collection_count} passages in the store ({report.passages_this_run} indexed now, "
        f"{index_s:.1f} s)")
    log(f"[3/3] loading the generator ({cfg.generator.model}) and answering ...")
    questions = [row for _, row in iter_jsonl(QUESTIONS_FILE)][: args.questions]
    results = []
    with Pipeline.from_config(cfg, encoder=encoder) as pipeline:
        for q in questions:
            answer = pipeline.answer(q["question"], str(DEMO_DIR / q["image"]), k=args.k)
            results.append((q, answer))
            if not args.json:
                print()
                print(format_answer(answer, limit=args.show))
                print(f"   (reference answer: {q['answer']}; passage holding it: {q['gold']})")
    if args.json:
        print(json.dumps({
            "tiny": args.tiny, "config": config_path, "store": cfg.store.describe(),
            "indexed": report.to_dict(), "note": TINY_BANNER if args.tiny else None,
            "answers": [{**a.to_dict(), "reference": q["answer"], "gold_passage": q["gold"]} for q, a in results],
        }, indent=2, ensure_ascii=False))
    elif args.tiny:
        print()
        print(TINY_BANNER)
    return 0

