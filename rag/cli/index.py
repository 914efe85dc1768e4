"""``ret2vqa index build`` and ``ret2vqa index info``: fill a Qdrant collection from a KB, inspect it.

``index build --config CONFIG --kb FILE --format {evqa,infoseek,m2kr,mbeir,jsonl}`` reads the
KB, encodes passages with the ReT-2 encoder of the config and upserts them, with a
progress bar; run it again after an interruption (Ctrl-C, a crash, kill -9) and it
resumes where the last saved batch ended. ``--store PATH`` / ``--url URL`` /
``--collection NAME`` override the config's store section. For several GPUs, start it
with ``accelerate launch --multi_gpu --num_processes N -m rag.cli.index build ...``
(or ``torchrun --nproc_per_node N -m rag.cli.index build ...``).

``index info`` prints the collection's size, encoder, dimension, configuration and
indexing progress (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ret2vqa.argtypes import int_arg

FORMATS = ("evqa", "infoseek", "m2kr", "mbeir", "jsonl")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--store`` / ``--url`` / ``--collection`` / ``--api-key``: shared by index and search."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="PATH", help="embedded Qdrant Edge store directory (backend edge)")
    where.add_argument("--url", metavar="URL", help="Qdrant server/cluster URL (backend server; ':memory:' = local mode)")
    parser.add_argument("--collection", metavar="NAME", help="collection name (default: the config's, else 'kb')")
    parser.add_argument("--api-key", metavar="KEY", help="Qdrant API key (default: $QDRANT_API_KEY)")


def store_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--store`` / ``--url`` / ``--collection`` / ``--api-key`` change in the config (flags win)."""
    store, url = getattr(args, "store", None), getattr(args, "url", None)
    return {
        "store.backend": "edge" if store else "server" if url else None,
        "store.path": store,
        "store.url": url,
        "store.collection": getattr(args, "collection", None),
        "store.api_key": getattr(args, "api_key", None),
    }


def load_config(args: argparse.Namespace, **changes: Any) -> Any:
    """The pipeline config of ``--config`` (all defaults without one) with the command-line flags applied."""
    from rag.config import PipelineConfig

    config = PipelineConfig.from_yaml(args.config) if getattr(args, "config", None) else PipelineConfig()
    return config.override({**store_overrides(args), **changes})


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build or inspect a knowledge-base collection",
        description="Build a Qdrant collection from a knowledge base (resumable), or show what a collection holds.",
    )
    sub = parser.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    build = sub.add_parser(
        "build",
        help="encode a KB file and upsert it into a collection (resumes after interruption)",
        description=(
            "Read a knowledge base, encode its passages with ReT-2 and upsert them into the collection of the "
            "config. Progress is saved after every batch: run the same command again to resume."
        ),
    )
    build.add_argument("--config", required=True, metavar="CONFIG", help="YAML with encoder/store/ingest sections")
    build.add_argument("--kb", required=True, metavar="FILE", help="knowledge-base file")
    build.add_argument("--format", required=True, choices=FORMATS, help="KB format")
    add_store_arguments(build)
    build.add_argument("--limit", type=int_arg(min=0), metavar="N", help="index only the first N passages of the KB")
    build.add_argument("--strict", action="store_true", help="stop at the first malformed row")
    build.add_argument("--restart", action="store_true", help="ignore saved progress and re-index from the start")
    build.add_argument("--encoder", metavar="NAME_OR_PATH",
                       help="override encoder.name_or_path ('tiny-random/clip' for tests)")
    build.add_argument("--device", help="override encoder.device (e.g. cuda, cuda:1, cpu)")
    build.add_argument("--batch-size", type=int_arg(min=1), metavar="N", help="override ingest.batch_size (passages per checkpoint)")
    build.add_argument("--image-root", metavar="DIR", help="override ingest.image_root (local passage images)")
    build.add_argument("--no-optimize", action="store_true", help="do not build the HNSW index at the end")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--report", metavar="FILE", help="also write the run report as JSON")
    build.set_defaults(func=run_build)

    info = sub.add_parser("info", help="show a collection's size, encoder, dimension, config and progress")
    info.add_argument("--config", metavar="CONFIG", help="YAML with a store section (optional)")
    add_store_arguments(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    verify = sub.add_parser(
        "verify",
        help="check a collection: point count against the indexing progress, vectors and payloads readable",
        description=(
            "Check that a collection holds what its indexing progress records (the point count), that a sample "
            "of its vectors can be read back (finite, of the right dimension), that their payloads decode and "
            "name their passages, and that an exact search runs. Prints what is wrong and exits with status 2 "
            "if anything is; `index build` with the same --kb repairs a collection that lost points."
        ),
    )
    verify.add_argument("--config", metavar="CONFIG", help="YAML with a store section (optional)")
    add_store_arguments(verify)
    verify.add_argument("--sample", type=int_arg(min=1), default=1000, metavar="N",
                        help="points read back with their vectors (default 1000)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=run_verify)


def run_build(args: argparse.Namespace) -> int:
    from rag.ingest import build_index

    config = load_config(args, **{
        "encoder.name_or_path": args.encoder, "encoder.device": args.device, "ingest.batch_size": args.batch_size,
        "ingest.image_root": args.image_root, "ingest.strict": True if args.strict else None,
        "ingest.optimize": False if args.no_optimize else None,
    })
    report = build_index(config, args.kb, args.format, limit=args.limit, restart=args.restart,
                         show_progress=not args.no_progress)
    if not report.main_process:  # other processes of a multi-GPU run only encoded
        return 0
    print(report.summary())
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=1)
    return 0


def collection_info(config: Any) -> dict[str, Any]:
    """What ``index info`` shows, as data; works on a collection that a running build holds open."""
    from rag.ingest.indexer import STATE_NAME
    from rag.ingest.integrity import count_problem, expected_points, verify_collection
    from rag.store import EdgeStore, StoreLockedError, open_store

    try:
        with open_store(config.store) as store:
            info = store.info()
            info["ingest"] = store.load_state(STATE_NAME) or {}
            info["expected_points"] = expected_points(info["ingest"])
            problem = count_problem(info["count"], info["expected_points"])
            check = verify_collection(store, info["ingest"], sample=8, search=False)  # cheap: a few points read back
            info["problems"] = ([problem] if problem else []) + [p for p in check.problems if p != problem]
            info["repairable"] = bool(problem) and info["problems"] == [problem]
            return info
    except StoreLockedError as exc:
        info = EdgeStore.peek(config.store)
        info["ingest"] = info.pop("states").get(STATE_NAME) or {}
        info["note"] = f"{exc}; showing the saved metadata and progress"
        return info


def format_info(info: dict[str, Any]) -> str:
    meta = info["metadata"]
    store_cfg = meta.get("config", {}).get("store", {})
    hnsw = store_cfg.get("hnsw", {})
    quant = store_cfg.get("quantization", {}).get("type", "none")
    rows = [
        ("collection", f"{info['collection']} ({info['backend']}: {info['location']})"),
        (
            "points",
            "unavailable while in use" if info.get("count") is None
            else f"{info['count']} (indexed vectors: {info.get('indexed_vectors', '?')}, segments: {info.get('segments', '?')})",
        ),
        ("encoder", f"{meta['encoder_name']}" + (f" (revision {meta['encoder_revision']})" if meta.get("encoder_revision") else "")
         + (f", fingerprint {meta['encoder_fingerprint']}" if meta.get("encoder_fingerprint") else "")),
        ("dimension", f"{meta['dim']} ({meta['distance']}"
                      + (", multivector: MaxSim over token vectors)" if meta.get("multivector") else ")")),
        ("created", f"{meta['created_at']} with {meta['created_with']}"),
        ("index", f"HNSW m={hnsw.get('m')} ef_construct={hnsw.get('ef_construct')} hnsw_ef={hnsw.get('hnsw_ef')}; "
                  f"quantization {quant}"),
        ("payload indexes", ", ".join(info.get("payload_indexes") or []) or "none"),
    ]
    for state in (info.get("ingest") or {}).values():
        source = state.get("source", {})
        status = "complete" if state.get("complete") else "in progress / stopped"
        status += ", optimized" if state.get("optimized") else ", not optimized yet"
        rows.append((
            "ingested",
            f"{source.get('path')} ({source.get('format')}): {state.get('passages')} passages, {status}; "
            f"{state.get('malformed', 0)} malformed rows, {state.get('missing_images', 0)} images missing "
            f"(updated {state.get('updated_at', '?')})",
        ))
    if info.get("note"):
        rows.append(("note", info["note"]))
    for problem in info.get("problems") or []:
        fix = ("`ret2vqa index build` with the same --kb repairs lost points" if info.get("repairable")
               else "move the collection away and build it again")
        rows.append(("PROBLEM", f"{problem} (details: `ret2vqa index verify`; {fix})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run_info(args: argparse.Namespace) -> int:
    config = load_config(args)
    info = collection_info(config)
    if args.json:
        print(json.dumps(info, indent=1, ensure_ascii=False, default=str))
    else:
        print(format_info(info))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from rag.ingest.indexer import STATE_NAME
    from rag.ingest.integrity import verify_collection
    from rag.store import open_store

    config = load_config(args)
    with open_store(config.store) as store:
        report = verify_collection(store, store.load_state(STATE_NAME) or {}, sample=args.sample)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.summary())
    if not report.ok:
        raise report.error()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``index`` on its own (``python -m rag.cli.index ...``, e.g. under ``accelerate launch``)."""
    from rag.cli import main as ret2vqa_main

    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a in ("--debug", "-v", "--verbose")]
    return ret2vqa_main([*flags, "index", *(a for a in argv if a not in flags)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
