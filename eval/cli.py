"""``ret2vqa eval`` (run a benchmark end to end and score it) and ``ret2vqa score`` (the official metrics).

``eval {infoseek,evqa}`` answers every question of a split with the pipeline of
``--config`` (:mod:`eval.answering`) and writes predictions, rankings, metrics and a
report. ``eval {m2kr,mbeir}`` measures retrieval alone, on each task's own corpus
(:mod:`eval.retrieval_benchmark`)::

    ret2vqa eval infoseek --config C --questions Q.jsonl --images DIR --out DIR
    ret2vqa eval m2kr --config C --out DIR (--data DIR [--tasks EVQA,...] | --queries Q.jsonl --passages P.jsonl --images ROOT)
    ret2vqa eval mbeir --config C --root M-BEIR/ --split test [--tasks ...] [--pool local|union] --out DIR

``score`` applies the official E-VQA and InfoSeek answer metrics to prediction
files. Contract (other scripts call exactly this)::

    ret2vqa score infoseek --pred PRED.jsonl --ref REF.jsonl --qtype QTYPE.jsonl
    ret2vqa score evqa --pred PRED.jsonl --ref REF.csv [--bem MODEL]

Each prints one JSON object on stdout; warnings (ignored or missing ids) go to stderr
as ``warning: ...`` lines; bad input exits with status 2 and one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ret2vqa.argtypes import int_arg, int_list_arg
from ret2vqa.errors import ConfigError

INFOSEEK_EPILOG = """\
ids, as the official InfoSeek evaluator handles them:
  * a prediction whose data_id is not in REF is ignored (warning with the count);
  * a REF question without a prediction is not counted: every score is over the
    predicted questions only (warning with the count);
  * a data_id predicted twice is an error (the official script would count it twice).
REF may be the raw official file (Numerical answer_eval as [{"wikidata", "range"}]) or the
evaluator's internal form ([lo, hi] strings). A question is 'unseen_question' iff its
data_split ends with 'unseen_question', otherwise 'unseen_entity'.
output: {"final_score", "unseen_question_score": {"score", "score_time", "score_num",
"score_string"}, "unseen_entity_score": {...}}, each x100 and rounded to 2 decimals."""

EVQA_EPILOG = """\
PRED lines are {"question_id": <0-based row index in REF.csv>, "prediction": "..."}.
ids:
  * a question_id that is not a row of REF.csv is an error;
  * a REF question without a prediction is scored 0 by default (--missing zero, warning
    with the count), so accuracy is over the whole file; --missing ignore scores only the
    predicted questions (e.g. single-hop-only runs), --missing error refuses;
  * a question_id predicted twice is an error.
Unknown question types and references that are empty (after normalisation) are errors,
as in the official evaluator.
metric: without --bem the score is exact match only ("metric": "exact_match"), a lower
bound, NOT the official number; with --bem MODEL it is the official exact match then BEM
("metric": "bem"). MODEL is a transformers sequence-classification BEM checkpoint (hub
name or local directory).
output: {"accuracy" (0-100), "metric", "n", "correct", "by_question_type": {type:
{"accuracy", "n", "correct"}}, "single_hop", "two_hop", "n_missing", "missing_policy", ...}"""


def register(subparsers: argparse._SubParsersAction) -> None:
    register_eval(subparsers)
    register_score(subparsers)


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run a benchmark end to end: E-VQA / InfoSeek answers, M2KR / M-BEIR retrieval",
        description=(
            "Run a benchmark end to end and score it. infoseek / evqa: retrieve and answer every question of a "
            "split with the pipeline. m2kr / mbeir: index each task's corpus into its own collection and measure "
            "retrieval recall as the ReT and UniIR papers do. Every run writes metrics.json, report.md and "
            "recall_at_k.png to --out and resumes when rerun."
        ),
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name in ("infoseek", "evqa"):
        _register_answering(benchmarks, name)
    _register_m2kr(benchmarks)
    _register_mbeir(benchmarks)


def _register_answering(benchmarks: argparse._SubParsersAction, name: str) -> None:
    parser = benchmarks.add_parser(
        name,
        help=f"retrieve and answer every question of an {'InfoSeek' if name == 'infoseek' else 'E-VQA'} split",
        description=(
            "Retrieve and answer every question of a benchmark split, then score it. Writes to --out: "
            "predictions.jsonl (the format `ret2vqa score` reads), retrieval.jsonl (rankings), metrics.json "
            "(answer accuracy with the official metric, recall@k, timings), report.md and recall_at_k.png. "
            "Resumable: a rerun skips the questions already answered in --out."
        ),
    )
    parser.add_argument("--config", help="pipeline YAML (default: the CPU preset, configs/cpu.yaml)")
    parser.add_argument("--questions", required=True,
                        help="infoseek: infoseek_{val,test}.jsonl; evqa: the official {val,test}.csv")
    parser.add_argument("--images", required=True,
                        help="infoseek: OVEN images (sharded NN/ or flat); evqa: <dir>/<image_id>.jpg, or "
                             "inaturalist/ + landmarks/ in the official layouts")
    parser.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    parser.add_argument("--limit", type=int_arg(min=1), help="only the first N questions")
    parser.add_argument("-k", "--k", type=int_arg(min=0), help="passages given to the generator (default: retrieval.k)")
    parser.add_argument("--depth", type=int_arg(min=1), help="retrieval depth for recall@k (default: max(k, 20))")
    parser.add_argument("--ks", type=int_list_arg(min=1), default="1,5,10,20", help="recall cut-offs, comma-separated (default 1,5,10,20)")
    parser.add_argument("--batch-size", type=int_arg(min=1), default=16, help="questions per retrieval/generation step")
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
    parser.set_defaults(func=run_eval)


M2KR_EPILOG = """\
layouts:
  --data DIR       the M2KR dataset download: <Task>_data/<split>-*.parquet beside
                   <Task>_passages/<split>_passages-*.parquet (jsonl exports with the same
                   names work too); --tasks picks some (default: all found)
  --queries Q --passages P
                   ReT's jsonl files (queries: data_id, instruction, question, image_path,
                   passage_id, answer; passages: passage_id, passage_text, passage_image_path);
                   several pairs may be given, each a task named by --tasks or its file name
images: --queries: <--images>/<path>; --data: <--images>/<Task>/<path> when that folder exists (as
M2KR_Images unpacks), else <--images>/<path>.
outputs: retrieval.jsonl ({"task", "id", "hit_rank", "pseudo_rank", "retrieved": [{"id", "score"}]}),
metrics.json ({"recall@K", "pseudo_recall@K" for each K, "n", "n_pseudo", "per_task": {task: {"n",
"recall@K", "pseudo_recall@K", "n_pseudo", "index": {...}}}, ...}, fractions in [0, 1]), report.md,
recall_at_k.png."""

MBEIR_EPILOG = """\
reads, under --root: query/<split>/mbeir_<dataset>_task<N>_<split>.jsonl, qrels/<split>/*_qrels.txt,
instructions/query_instructions.tsv, cand_pool/local/mbeir_<dataset>_task<N>[_<split>]_cand_pool.jsonl
(--pool local) or cand_pool/global/mbeir_union_<split>_cand_pool.jsonl (--pool union), and the images
(paths relative to --root). Recall@K = 1 if any relevant candidate (qrels) is in the top K; K = 1, 5, 10
(10, 20, 50 for Fashion200K and FashionIQ). "average" is UniIR's: the mean over dataset/task rows of R@5
(R@10 for the fashion sets).
outputs: retrieval.jsonl, metrics.json ({"average", "per_task": {task: {"dataset", "task_id", "task",
"headline", "n", "recall@K", "index": {...}}}, ...}), report.md, recall_at_k.png."""


def _retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``eval m2kr`` and ``eval mbeir`` share."""
    parser.add_argument("--config", help="pipeline YAML; its encoder is evaluated (default: configs/cpu.yaml)")
    parser.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    parser.add_argument("--limit", type=int_arg(min=1), metavar="N", help="only the first N queries of each task (smoke runs)")
    parser.add_argument("--limit-passages", type=int_arg(min=1), metavar="N",
                        help="index at most N passages of each corpus file (smoke runs: recall is then not comparable)")
    parser.add_argument("--store", metavar="PATH", help="store directory holding the corpus collections "
                                                        "(default: the config's store.path)")
    parser.add_argument("--depth", type=int_arg(min=1), help="candidates retrieved per query (default: the largest K)")
    parser.add_argument("--batch-size", type=int_arg(min=1), default=64, help="queries per search batch (default 64)")
    parser.add_argument("--exact", action="store_true", help="exhaustive search instead of the HNSW index")
    parser.add_argument("--hnsw-ef", type=int_arg(min=1), help="HNSW search beam (default: store.hnsw.hnsw_ef)")
    parser.add_argument("--missing-images", choices=["text_only", "error"], default="text_only",
                        help="a query whose image is missing or unreadable: encode it from its text, counted and "
                             "reported with file and line (default), or stop")
    parser.add_argument("--lenient", action="store_true",
                        help="report and skip malformed query rows instead of stopping (corpus rows follow "
                             "ingest.strict)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _register_m2kr(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "m2kr", help="M2KR retrieval recall (ReT / PreFLMR convention)",
        description="Index each M2KR task's passage corpus into its own collection (resumable; skipped when\n"
                    "already built with the same encoder), retrieve every query with its own instruction, and\n"
                    "report Recall@K and pseudo-Recall@K (K = 1, 2, 3, 5, 10, 50, 100) per task and overall.",
        epilog=M2KR_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", metavar="DIR", help="the M2KR dataset folder (<Task>_data/, <Task>_passages/)")
    where.add_argument("--queries", nargs="+", metavar="Q.jsonl", help="ReT-M2KR query files")
    parser.add_argument("--passages", nargs="+", metavar="P.jsonl", help="ReT-M2KR passage files, one per --queries")
    parser.add_argument("--images", metavar="ROOT", help="image root (default: --data, or the queries' folder)")
    parser.add_argument("--tasks", help="--data: comma-separated tasks to run (e.g. EVQA,Infoseek,OKVQA); "
                                        "--queries: a name for each queries file")
    parser.add_argument("--split", default="test", help="--data: the split (default test)")
    parser.add_argument("--ks", type=int_list_arg(min=1), default=",".join(str(k) for k in (1, 2, 3, 5, 10, 50, 100)),
                        help="recall cut-offs (default 1,2,3,5,10,50,100)")
    _retrieval_arguments(parser)
    parser.set_defaults(func=run_m2kr)


def _register_mbeir(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "mbeir", help="M-BEIR retrieval recall (UniIR convention), local or union pool",
        description="Index M-BEIR candidate pools with their images (resumable; skipped when already built\n"
                    "with the same encoder), retrieve every query with its task's instruction, and report\n"
                    "Recall@K per dataset/task and UniIR's average.",
        epilog=MBEIR_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, metavar="M-BEIR/", help="the M-BEIR dataset folder")
    parser.add_argument("--split", default="test", help="query split (default test)")
    parser.add_argument("--tasks", help="comma-separated dataset/tasks or datasets (e.g. mscoco_task0,webqa; "
                                        "default: all)")
    parser.add_argument("--pool", choices=["local", "union"], default="local",
                        help="search each task's own pool (default) or the union pool")
    parser.add_argument("--no-instruction", action="store_true", help="queries without UniIR's instructions")
    _retrieval_arguments(parser)
    parser.set_defaults(func=run_mbeir)


def register_score(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score predictions with the official E-VQA / InfoSeek metrics",
        description="Score a prediction file with the official E-VQA or InfoSeek answer metric; prints JSON.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)

    info = benchmarks.add_parser(
        "infoseek",
        help="InfoSeek (official infoseek_eval metric)",
        description="Score InfoSeek predictions exactly as the official evaluator (infoseek_eval.py).",
        epilog=INFOSEEK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument(
        "--pred", required=True, metavar="PRED.jsonl", help='predictions: {"data_id": ..., "prediction": ...} per line'
    )
    info.add_argument(
        "--ref", required=True, metavar="REF.jsonl", help="reference annotations, e.g. infoseek_val.jsonl"
    )
    info.add_argument(
        "--qtype", required=True, metavar="QTYPE.jsonl", help="question types, e.g. infoseek_val_qtype.jsonl"
    )
    _common_arguments(info)
    info.set_defaults(func=run_infoseek)

    evqa = benchmarks.add_parser(
        "evqa",
        help="Encyclopedic-VQA (exact match, or the official exact match + BEM)",
        description="Score E-VQA predictions with the official metric (exact match, then BEM when --bem is given).",
        epilog=EVQA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evqa.add_argument(
        "--pred",
        required=True,
        metavar="PRED.jsonl",
        help='predictions: {"question_id": <row index>, "prediction": ...}',
    )
    evqa.add_argument("--ref", required=True, metavar="REF.csv", help="an official E-VQA question CSV (e.g. test.csv)")
    evqa.add_argument(
        "--bem", metavar="MODEL", help="BEM checkpoint (hub name or local dir); without it: exact match only"
    )
    evqa.add_argument("--bem-revision", metavar="REV", help="hub revision of the BEM checkpoint")
    evqa.add_argument("--bem-batch-size", type=int_arg(min=1), default=32, metavar="N", help="BEM batch size (default 32)")
    evqa.add_argument("--device", help="device for BEM (default: cuda if available, else cpu)")
    evqa.add_argument(
        "--missing",
        choices=("zero", "ignore", "error"),
        default="zero",
        help="reference questions without a prediction: score 0 (default), leave out, or fail",
    )
    _common_arguments(evqa)
    evqa.set_defaults(func=run_evqa)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-example", metavar="OUT.jsonl", help="also write each question's score here")
    parser.add_argument("--output", metavar="OUT.json", help="also write the result JSON here")
    parser.add_argument("--markdown", metavar="OUT.md", help="also write a markdown table of the result here")
    parser.add_argument(
        "--skip-malformed",
        action="store_true",
        help="report and skip malformed prediction lines (they then count as missing) instead of failing; "
        "reference files are always read strictly",
    )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _ids(ids: list, limit: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f"{shown}{', ...' if len(ids) > limit else ''}"


def _prediction_errors(args: argparse.Namespace):
    from ret2vqa.io import MalformedRows

    return MalformedRows(strict=not args.skip_malformed)


def _emit(args: argparse.Namespace, result: dict[str, Any], per_example: list[dict[str, Any]], name: str) -> None:
    from ret2vqa.io import write_jsonl

    from .report import markdown_report

    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.per_example:
        write_jsonl(args.per_example, per_example)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_report({name: result}), encoding="utf-8")
    print(text)


def run_infoseek(args: argparse.Namespace) -> int:
    from .infoseek import empty_split_note, load_references, score_predictions
    from .predictions import parse_data_id, read_predictions

    references = load_references(args.ref, args.qtype)
    pred_errors = _prediction_errors(args)
    predictions = read_predictions(args.pred, "data_id", pred_errors, parse_data_id)
    if pred_errors.count:
        _warn(pred_errors.summary())
    result = score_predictions(predictions, references)
    if result.unknown_ids:
        _warn(
            f"{len(result.unknown_ids)} prediction(s) have a data_id that is not in {args.ref} and were ignored, "
            f"as the official evaluator does ({_ids(result.unknown_ids)})"
        )
    if result.missing_ids:
        _warn(
            f"{len(result.missing_ids)} of {len(references)} reference question(s) have no prediction and are not counted "
            f"(scores are over the {len(result.examples)} predicted questions, as the official evaluator does)"
        )
    for qtype, count in result.unknown_question_types.items():
        _warn(f"{count} question(s) have question_type {qtype!r}: scored as String, as the official evaluator does")
    if not result.examples:
        _warn("no prediction matches a reference question: every score is 0")
    note = empty_split_note(result)
    if note:
        _warn(note)
    _emit(args, result.to_dict(), result.per_example(), "infoseek")
    return 0


def run_evqa(args: argparse.Namespace) -> int:
    from .evqa import load_questions, score_predictions
    from .predictions import parse_row_index, read_predictions

    rows = load_questions(args.ref)
    pred_errors = _prediction_errors(args)
    predictions = read_predictions(args.pred, "question_id", pred_errors, parse_row_index)
    if pred_errors.count:
        _warn(pred_errors.summary())
    bem = None
    if args.bem:
        from .evqa.bem import BEMConfig, TransformersBEM

        bem = TransformersBEM(
            BEMConfig(
                name_or_path=args.bem, revision=args.bem_revision, device=args.device, batch_size=args.bem_batch_size
            )
        )
    result = score_predictions(predictions, rows, bem=bem, missing=args.missing)
    if result.n_missing:
        fate = "scored 0 (--missing zero)" if args.missing == "zero" else "left out (--missing ignore)"
        _warn(f"{result.n_missing} of {len(rows)} reference question(s) have no prediction: {fate}")
    if bem is None:
        _warn("no --bem model: exact match only, a lower bound of the official E-VQA score")
    per_example = result.per_example()
    for item in per_example:
        item["reference"] = rows[item["question_id"]].answer
    _emit(args, result.to_dict(), per_example, "evqa")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from rag.config import load_pipeline_config  # a command may ask the composition root; eval's library never does
    from rag.pipeline import Pipeline

    from .answering import load_evqa, load_infoseek, run_benchmark

    config = load_pipeline_config(args.config)  # a config mistake is reported before any data is read
    ks = args.ks
    if args.benchmark == "infoseek":
        benchmark = load_infoseek(args.questions, args.images, args.qtype, args.withkb, args.limit,
                                  args.missing_images, strict=not args.lenient)
    else:
        benchmark = load_evqa(args.questions, args.images, args.inat_id2name, args.limit, args.missing_images,
                              args.single_hop, args.bem, strict=not args.lenient)
    with Pipeline.from_config(config) as pipeline:
        metrics = run_benchmark(pipeline, benchmark, args.out, k=args.k, depth=args.depth,
                                batch_size=args.batch_size, ks=ks, show_progress=not args.no_progress)
    print(json.dumps(metrics, indent=2))
    return 0


def _csv(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def _run_retrieval(args: argparse.Namespace, config: Any, benchmark: Any, prefix: str) -> int:
    from rag.corpora import CorpusCollections  # the composition root builds the encoder and the collections

    from .retrieval_benchmark import run_retrieval_benchmark

    collections = CorpusCollections(config, prefix=prefix)
    metrics = run_retrieval_benchmark(
        benchmark, collections, args.out, depth=args.depth, batch_size=args.batch_size,
        encode_batch_size=config.encoder.batch_size, instruction=config.retrieval.instruction,
        use_image=config.retrieval.use_image, passage_limit=args.limit_passages, exact=args.exact,
        hnsw_ef=args.hnsw_ef, show_progress=not args.no_progress,
    )
    print(json.dumps(metrics, indent=2))
    return 0


def _retrieval_config(args: argparse.Namespace) -> Any:
    from rag.config import load_pipeline_config

    config = load_pipeline_config(args.config)  # a config mistake is reported before any data is read
    return config.override({"store.path": args.store})


def run_m2kr(args: argparse.Namespace) -> int:
    from .retrieval_benchmark import load_m2kr

    config = _retrieval_config(args)
    ks = args.ks
    if args.queries and not args.passages:
        raise ConfigError("required with --queries (the passages each queries file searches)", "--passages")
    if args.queries and not args.images:
        raise ConfigError("required with --queries (the root image_path and passage_image_path are relative to)",
                          "--images")
    benchmark = load_m2kr(data=args.data, tasks=_csv(args.tasks), split=args.split, queries=args.queries,
                          passages=args.passages, images=args.images, limit=args.limit,
                          missing_images=args.missing_images, strict=not args.lenient, ks=ks,
                          show_progress=not args.no_progress)
    return _run_retrieval(args, config, benchmark, "m2kr")


def run_mbeir(args: argparse.Namespace) -> int:
    from .retrieval_benchmark import load_mbeir

    config = _retrieval_config(args)
    benchmark = load_mbeir(args.root, split=args.split, tasks=_csv(args.tasks), pool=args.pool, limit=args.limit,
                           missing_images=args.missing_images, strict=not args.lenient,
                           instructions=not args.no_instruction, show_progress=not args.no_progress)
    return _run_retrieval(args, config, benchmark, "mbeir")
