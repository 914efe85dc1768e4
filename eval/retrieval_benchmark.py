"""Retrieval benchmarks end to end: M2KR and M-BEIR, as the ReT and UniIR papers score them.

``ret2vqa eval m2kr`` and ``ret2vqa eval mbeir`` are thin layers over this module:

* :func:`load_m2kr` / :func:`load_mbeir` read a benchmark through the format readers
  (:mod:`eval.m2kr`, :mod:`eval.mbeir`) into :class:`RetrievalTask` objects: each task's
  queries (text, instruction, image, relevant ids, answers) and the corpus it searches;
* :func:`run_retrieval_benchmark` indexes each corpus into its own collection (through a
  ``collections`` object, :class:`rag.corpora.CorpusCollections`, so indexing resumes and
  is skipped when already done with the same encoder), retrieves every query with its
  own instruction (``encoder.encode_queries`` → ``store.search_batch``), appends the
  rankings to ``retrieval.jsonl`` a batch at a time (an interrupted run resumes), then
  writes ``metrics.json``, ``report.md`` and ``recall_at_k.png``.

Vectors go from the encoder to the store untouched: whatever ``encode_queries`` returns
(one vector per query, or a late-interaction matrix per query) is what ``search_batch``
receives, and the store's ranking is what is scored.

Metrics (fractions in [0, 1]; the report shows percents): a query *hits* at K when a
relevant id is among its first K retrieved ids (no de-duplication; M2KR's positive
passages, M-BEIR's qrels); M2KR's pseudo-recall hits when an answer (stripped,
lower-cased, non-empty) is a substring of a top-K passage (lower-cased). A query with an
empty ranking misses at every K; one without answers is left out of pseudo-recall only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from ret2vqa.errors import ConfigError, InputError, MissingFileError
from ret2vqa.io import MalformedRows, iter_jsonl, write_jsonl

from .answering import METRICS, PLOT, REPORT, RETRIEVAL, _check_run_settings

logger = logging.getLogger(__name__)

#: The cut-offs ReT reports on M2KR (``inference.py``).
M2KR_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 50, 100)

MissingImagePolicy = str  # "text_only" | "error"


@dataclass
class RetrievalQuery:
    """One query: its text parts, image file, relevant ids and (M2KR) answers for pseudo-recall."""

    id: str
    question: str | None
    image: str | None
    positives: list[str]
    answers: list[str] = field(default_factory=list)
    #: The query's own instruction; ``None``: the config's ``retrieval.instruction`` (else the encoder's default).
    instruction: str | None = None
    where: str = ""  # "file:line", for messages


@dataclass
class RetrievalTask:
    """A task: its queries and the corpus (files of one KB format) whose collection they search."""

    name: str
    queries: list[RetrievalQuery]
    corpus: list[Path]
    corpus_format: str  # a rag.ingest reader: "m2kr" | "mbeir"
    ks: tuple[int, ...]
    image_root: Path | None = None  # passage images are relative to it
    corpus_label: str = ""  # names the collection (tasks sharing a corpus share it); default: the task name
    info: dict[str, Any] = field(default_factory=dict)  # extra per-task fields of metrics.json


@dataclass
class RetrievalBenchmark:
    """A loaded benchmark: its tasks and what was found wrong while reading them."""

    name: str  # "m2kr" | "mbeir"
    tasks: list[RetrievalTask]
    split: str | None = None
    pseudo_recall: bool = False
    notes: list[str] = field(default_factory=list)
    malformed: MalformedRows = field(default_factory=MalformedRows)
    images: "QueryImages | None" = None
    settings: dict[str, Any] = field(default_factory=dict)  # benchmark-specific run settings (e.g. the pool)
    #: Benchmark-level numbers from the per-task metrics (default: the average over all scored queries).
    summarize: Callable[[dict[str, dict[str, Any]]], dict[str, Any]] | None = None


class QueryImages:
    """Resolves query images and counts the missing ones (file and line kept), by ``policy``:
    ``"text_only"`` encodes such a query from its text (what M2KR's black placeholder image
    amounts to), ``"error"`` stops with a message naming the file and line."""

    def __init__(self, policy: MissingImagePolicy = "text_only", max_kept: int = 20):
        if policy not in ("text_only", "error"):
            raise ConfigError(f"must be 'text_only' or 'error', got {policy!r}", "--missing-images")
        self.policy = policy
        self.max_kept = max_kept
        self.count = 0
        self.examples: list[str] = []

    def missing(self, where: str, message: str) -> None:
        if self.policy == "error":
            raise InputError(f"{where}: {message} (pass --missing-images text_only to encode such queries "
                             "from their text)")
        self.count += 1
        if len(self.examples) < self.max_kept:
            self.examples.append(f"{where}: {message}")
        if self.count <= 5:
            logger.warning("%s: %s; the query is encoded from its text", where, message)

    def resolve(self, relative: str | None, roots: Sequence[Path], where: str) -> str | None:
        """The image file: ``relative`` under the first of ``roots`` that holds it (or absolute)."""
        if not relative:
            return None
        path = Path(relative)
        candidates = [path] if path.is_absolute() or not roots else [root / path for root in roots]
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            return str(found)
        self.missing(where, f"image not found: {candidates[0]}")
        return None


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def recall_by_k(ranks: Sequence[int | None], ks: Iterable[int], name: str = "recall") -> dict[str, float | None]:
    """``{"{name}@{k}": fraction of ranks <= k}`` (``None`` values when there are no queries)."""
    from .retrieval import recall_from_ranks

    ks = list(ks)
    if not ranks:
        return {f"{name}@{k}": None for k in ks}
    return {f"{name}@{k}": v for k, v in recall_from_ranks(ranks, ks).items()}


def task_metrics(queries: Sequence[RetrievalQuery], rankings: Sequence[Sequence[str]], ks: Sequence[int],
                 pseudo_ranks: Sequence[int | None] | None = None) -> dict[str, Any]:
    """A task's numbers: ``n``, ``recall@K`` and, with ``pseudo_ranks``, ``n_pseudo`` and ``pseudo_recall@K``.

    ``rankings[i]`` are the ids retrieved for ``queries[i]``, best first; ``pseudo_ranks[i]``
    the rank of its first passage containing an answer (:func:`eval.retrieval.pseudo_hit_ranks`).
    """
    from .retrieval import first_hit_ranks

    ranks = first_hit_ranks(rankings, [q.positives for q in queries], dedup=False, on_empty="miss")
    out: dict[str, Any] = {"n": len(queries), **recall_by_k(ranks, ks)}
    if pseudo_ranks is not None:
        scored = [r for q, r in zip(queries, pseudo_ranks) if any(a.strip() for a in q.answers)]
        out["n_pseudo"] = len(scored)
        out.update(recall_by_k(scored, ks, "pseudo_recall"))
    return out


def pooled_metrics(per_task: dict[str, dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """``recall@K`` / ``pseudo_recall@K`` averaged over every scored query of every task (micro average)."""
    out: dict[str, Any] = {}
    for name, count in (("recall", "n"), ("pseudo_recall", "n_pseudo")):
        for k in ks:
            parts = [(m[f"{name}@{k}"], m.get(count, 0)) for m in per_task.values() if m.get(f"{name}@{k}") is not None]
            total = sum(n for _, n in parts)
            out[f"{name}@{k}"] = sum(v * n for v, n in parts) / total if total else None
        out[count] = sum(m.get(count, 0) for m in per_task.values())
    return out


def mbeir_average(per_task: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """UniIR's "Average": the mean over dataset/task rows of each row's headline recall
    (R@5; R@10 for Fashion200K and FashionIQ)."""
    from .mbeir import TABLE_ORDER

    values = {name: m[m["headline"]] for name, m in per_task.items() if m.get(m["headline"]) is not None}
    out: dict[str, Any] = {"average": sum(values.values()) / len(values) if values else None, "average_rows": len(values)}
    missing = [name for name in TABLE_ORDER if name not in values]
    if missing:
        out["average_note"] = (f"over {len(values)} of UniIR's {len(TABLE_ORDER)} dataset/task rows (missing: "
                               f"{', '.join(missing)}): not comparable with a published 16-row average")
    return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _bar(iterable: Iterable, desc: str, show: bool, unit: str = "row") -> Iterable:
    return tqdm(iterable, desc=desc, unit=unit, disable=not show, file=sys.stderr, leave=False)


def _first_time(seen: dict[str, int], qid: str, malformed: MalformedRows, path: Path, line: int) -> bool:
    """Whether ``qid`` is new in its task; a repeated id is reported (its rankings would overwrite each other)."""
    if qid in seen:
        malformed.report(path, line, f"query id {qid!r} already used at line {seen[qid]}")
        return False
    seen[qid] = line
    return True


def _task_name(path: Path) -> str:
    """ReT's files are ``<task>_test.jsonl`` / ``<task>_passages_test.jsonl``: the part before the first ``_``."""
    return path.name.split(".")[0].split("_")[0] or path.stem


def load_m2kr(
    *, data: str | Path | None = None, tasks: Sequence[str] | None = None, split: str = "test",
    queries: Sequence[str | Path] | None = None, passages: Sequence[str | Path] | None = None,
    images: str | Path | None = None, limit: int | None = None, missing_images: MissingImagePolicy = "text_only",
    strict: bool = True, ks: Sequence[int] = M2KR_KS, show_progress: bool = True,
) -> RetrievalBenchmark:
    """M2KR tasks from the dataset's layout (``data``, :func:`eval.m2kr.find_m2kr_tasks`) or ReT's jsonl files
    (``queries[i]`` searching ``passages[i]``, tasks named by ``tasks`` or by the file names).

    Images: ReT's paths are relative to ``images`` (default: the queries' folder); the dataset's
    ``img_path`` to ``images/<Task>`` when that folder exists (M2KR_Images ships one folder per
    task), else to ``images`` (default: ``data``). ``limit``: the first N queries of each task.
    """
    from .m2kr import find_m2kr_tasks, iter_m2kr_queries

    if (data is None) == (queries is None):
        raise ConfigError("give either --data DIR or --queries Q.jsonl --passages P.jsonl", "--data")
    if data is not None:
        found = [(t.name, list(t.queries), list(t.passages)) for t in find_m2kr_tasks(data, split, tasks)]
        root = Path(images) if images else Path(data)
        split_name: str | None = split
    else:
        queries, passages = [Path(q) for q in queries or []], [Path(p) for p in passages or []]
        if len(queries) != len(passages):
            raise ConfigError(f"{len(queries)} --queries files but {len(passages)} --passages files: give one "
                              "passages file per queries file", "--passages")
        names = list(tasks) if tasks else [_task_name(q) for q in queries]
        if len(names) != len(queries):
            raise ConfigError(f"{len(names)} task names for {len(queries)} --queries files", "--tasks")
        found = [(n, [q], [p]) for n, q, p in zip(names, queries, passages)]
        root = Path(images) if images else queries[0].parent
        split_name = None
    if len({n.lower() for n, _, _ in found}) != len(found):
        raise ConfigError(f"task names must differ, got {[n for n, _, _ in found]} (name them with --tasks)", "--tasks")
    malformed = MalformedRows(strict=strict)
    checker = QueryImages(missing_images)
    out: list[RetrievalTask] = []
    for name, query_files, passage_files in found:
        # M2KR_Images ships one folder per task; ReT's jsonl paths are relative to the root itself.
        task_root = root / name if data is not None and (root / name).is_dir() else root
        roots = [task_root, root] if task_root != root else [root]
        items: list[RetrievalQuery] = []
        seen: dict[str, int] = {}
        for path in query_files:
            for q in _bar(iter_m2kr_queries(path, malformed), f"reading {name} queries", show_progress):
                if limit is not None and len(items) >= limit:
                    break
                where = f"{path}:{q.line}"
                if not _first_time(seen, q.data_id or where, malformed, path, q.line):
                    continue
                items.append(RetrievalQuery(
                    id=q.data_id or where, question=q.question, image=checker.resolve(q.image_path, roots, where),
                    positives=list(q.positives), answers=list(q.answers), instruction=q.instruction, where=where,
                ))
        out.append(RetrievalTask(name=name, queries=items, corpus=passage_files, corpus_format="m2kr",
                                 ks=tuple(sorted(set(ks))), image_root=task_root))
    notes = []
    if limit is not None:
        notes.append(f"--limit {limit}: the first {limit} queries of each task, not the published test sets")
    return RetrievalBenchmark("m2kr", out, split=split_name, pseudo_recall=True, notes=notes, malformed=malformed,
                              images=checker)


def load_mbeir(
    root: str | Path, *, split: str = "test", tasks: Sequence[str] | None = None, pool: str = "local",
    limit: int | None = None, missing_images: MissingImagePolicy = "text_only", strict: bool = True,
    instructions: bool = True, show_progress: bool = True,
) -> RetrievalBenchmark:
    """M-BEIR dataset/tasks of ``split`` (:func:`eval.mbeir.find_mbeir_tasks`), searching each task's
    ``local`` pool or the ``union`` pool; relevant candidates from the qrels, prompts from
    ``instructions/query_instructions.tsv`` (``instructions=False``: none, UniIR's ablation)."""
    from .mbeir import (
        DATASETS,
        TASKS,
        find_mbeir_tasks,
        format_string,
        headline_k,
        iter_mbeir_queries,
        load_instructions,
        load_qrels,
        query_prompt,
        recall_ks,
        split_instruction,
    )

    if pool not in ("local", "union"):
        raise ConfigError(f"must be 'local' or 'union', got {pool!r}", "--pool")
    root = Path(root)
    found = find_mbeir_tasks(root, split, tasks)
    prompts = load_instructions(root / "instructions" / "query_instructions.tsv") if instructions else {}
    malformed = MalformedRows(strict=strict)
    checker = QueryImages(missing_images)
    out: list[RetrievalTask] = []
    for files in found:
        corpus = files.local_pool if pool == "local" else files.union_pool
        for path, what in ((files.qrels, "M-BEIR qrels file"), (corpus, f"M-BEIR {pool} candidate pool")):
            if not path.is_file():
                raise MissingFileError(path, what)
        qrels = load_qrels(files.qrels, malformed)
        items: list[RetrievalQuery] = []
        seen: dict[str, int] = {}
        for q in _bar(iter_mbeir_queries(files.queries, malformed), f"reading {files.name} queries", show_progress):
            if limit is not None and len(items) >= limit:
                break
            where = f"{files.queries}:{q.line}"
            if not _first_time(seen, q.qid, malformed, files.queries, q.line):
                continue
            relevant = qrels.relevant.get(q.qid)
            if not relevant:
                malformed.report(files.queries, q.line, f"query {q.qid} has no relevant candidate in {files.qrels}")
                continue
            if instructions:
                instruction, question = split_instruction(query_prompt(prompts, q.dataset_id, files.task_id, where),
                                                          q.text)
            else:
                instruction, question = "", format_string(q.text)
            items.append(RetrievalQuery(
                id=q.qid, question=question or None, image=checker.resolve(q.image_path, [root], where),
                positives=relevant, instruction=instruction, where=where,
            ))
        qmod, cmod = TASKS[files.task_id]
        out.append(RetrievalTask(
            name=files.name, queries=items, corpus=[corpus], corpus_format="mbeir", ks=recall_ks(files.dataset),
            image_root=root, corpus_label=f"{pool}-{split}" if pool == "union" else files.name,
            info={"dataset": next((n for n in DATASETS.values() if n.lower() == files.dataset), files.dataset),
                  "task_id": files.task_id, "task": f"{qmod} -> {cmod}",
                  "headline": f"recall@{headline_k(files.dataset)}"},
        ))
    notes = [] if instructions else ["queries without instructions (--no-instruction)"]
    if limit is not None:
        notes.append(f"--limit {limit}: the first {limit} queries of each task, not the published test sets")
    return RetrievalBenchmark("mbeir", out, split=split, notes=notes, malformed=malformed, images=checker,
                              settings={"pool": pool, "instructions": instructions}, summarize=mbeir_average)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranking:
    """What scoring needs of a stored ranking (the ids, the pseudo-recall rank): kept small, there is one per query."""

    ids: tuple[str, ...]
    pseudo_rank: int | None


def _read_rankings(path: Path) -> dict[tuple[str, str], _Ranking]:
    """Rankings already in ``retrieval.jsonl`` by (task, query id); a line cut by a crash is redone."""
    if not path.is_file():
        return {}
    done: dict[tuple[str, str], _Ranking] = {}
    for _, row in iter_jsonl(path, MalformedRows()):
        if "task" in row and "id" in row and isinstance(row.get("retrieved"), list):
            done[(str(row["task"]), str(row["id"]))] = _Ranking(tuple(str(p["id"]) for p in row["retrieved"]),
                                                                row.get("pseudo_rank"))
    return done


def _index_summary(collection: str, reports: Sequence[Any]) -> dict[str, Any]:
    return {
        "collection": collection,
        "files": [r.kb for r in reports],
        "passages": sum(r.passages_total for r in reports),
        "indexed_this_run": sum(r.passages_this_run for r in reports),
        "complete": all(r.complete for r in reports),
        "malformed_rows": sum(r.malformed for r in reports),
        "malformed_examples": [e for r in reports for e in r.malformed_examples][:5],
        "missing_images": sum(r.missing_images for r in reports),
        "missing_image_examples": [e for r in reports for e in r.missing_image_examples][:5],
        "skipped": {k: sum(r.skipped.get(k, 0) for r in reports) for k in {k for r in reports for k in r.skipped}},
    }


class _Retriever:
    """Encodes a batch of queries (grouped by instruction) and searches one collection."""

    def __init__(self, encoder: Any, batch_size: int, default_instruction: str | None, use_image: bool,
                 exact: bool, hnsw_ef: int | None, images: QueryImages):
        self.encoder = encoder
        self.batch_size = batch_size
        self.default_instruction = default_instruction
        self.use_image = use_image
        self.exact = exact
        self.hnsw_ef = hnsw_ef
        self.images = images
        self.timings = {"encode_ms": 0.0, "search_ms": 0.0}

    def __call__(self, store: Any, queries: Sequence[RetrievalQuery], depth: int) -> list[list[Any]]:
        groups: dict[str | None, list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(q.instruction if q.instruction is not None else self.default_instruction, []).append(i)
        results: list[list[Any]] = [[] for _ in queries]
        for instruction, members in groups.items():
            batch = [queries[i] for i in members]

            def bad_image(index: int, message: str) -> None:
                self.images.missing(batch[index].where, message)

            t0 = time.perf_counter()
            try:
                vectors = self.encoder.encode_queries(
                    [q.question for q in batch], images=[q.image if self.use_image else None for q in batch],
                    instruction=instruction, batch_size=self.batch_size,
                    on_bad_image=bad_image if self.images.policy == "text_only" else None,
                )
            except InputError as exc:  # an item error: name the query's file and line, not its index in the batch
                index = getattr(exc, "index", None)
                if not isinstance(index, int) or not 0 <= index < len(batch):
                    raise
                raise InputError(f"{batch[index].where}: {exc}") from exc
            t1 = time.perf_counter()
            hits = store.search_batch(vectors, k=depth, hnsw_ef=self.hnsw_ef, exact=self.exact)
            self.timings["encode_ms"] += (t1 - t0) * 1000
            self.timings["search_ms"] += (time.perf_counter() - t1) * 1000
            for i, passages in zip(members, hits):
                results[i] = passages
        return results


def run_retrieval_benchmark(
    benchmark: RetrievalBenchmark, collections: Any, out_dir: str | Path, *, depth: int | None = None,
    batch_size: int = 64, encode_batch_size: int = 32, instruction: str | None = None, use_image: bool = True,
    passage_limit: int | None = None, exact: bool = False, hnsw_ef: int | None = None, show_progress: bool = True,
) -> dict[str, Any]:
    """Index each task's corpus, retrieve its queries (resuming from ``out_dir``), score, report.

    ``collections``: builds and opens corpus collections (:class:`rag.corpora.CorpusCollections`:
    ``encoder``, ``build(label, files, fmt, image_root, limit, show_progress) -> (name, reports)``,
    ``open(name)``). ``depth``: how many candidates each query retrieves (default: the largest
    K). ``instruction``: the instruction of queries that carry none (``None``: the encoder's
    default). ``passage_limit``: index at most that many passages per corpus file (smoke runs).
    ``exact``/``hnsw_ef``: search exhaustively / with this HNSW beam instead of the store's.
    """
    from .report import plot_recall_at_k
    from .retrieval import first_hit_ranks, pseudo_hit_ranks

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_ks = sorted({k for t in benchmark.tasks for k in t.ks})
    depth = max(all_ks) if depth is None else int(depth)
    if depth < 1:
        raise ConfigError(f"must be >= 1, got {depth}", "--depth")
    encoder = collections.encoder
    _check_run_settings(out, {
        "benchmark": benchmark.name, "split": benchmark.split, **benchmark.settings,
        "encoder": getattr(encoder, "name_or_path", None), "encoder_fingerprint": getattr(encoder, "fingerprint", None),
        "retrieval_depth": depth, "instruction": instruction, "use_image": use_image,
        "passage_limit": passage_limit, "exact": exact, "hnsw_ef": hnsw_ef,
    }, done=RETRIEVAL)
    done = _read_rankings(out / RETRIEVAL)
    images = benchmark.images or QueryImages()
    retrieve = _Retriever(encoder, encode_batch_size, instruction, use_image, exact, hnsw_ef, images)
    per_task: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[int, float]] = {}
    notes = list(benchmark.notes)
    retrieved_this_run = 0
    started = time.perf_counter()
    stores: dict[str, Any] = {}
    try:
        for task in benchmark.tasks:
            collection, reports = collections.build(task.corpus_label or task.name, task.corpus, task.corpus_format,
                                                    image_root=task.image_root, limit=passage_limit,
                                                    show_progress=show_progress)
            index = _index_summary(collection, reports)
            if not index["complete"]:
                notes.append(f"{task.name}: {collection} holds {index['passages']} passages, not the whole corpus "
                             f"(--limit-passages): recall is not comparable with published numbers")
            todo = [q for q in task.queries if (task.name, q.id) not in done]
            if todo and collection not in stores:
                stores[collection] = collections.open(collection)
            # Queries sharing an instruction share encoder batches.
            todo.sort(key=lambda q: q.instruction or "")
            bar = tqdm(total=len(task.queries), initial=len(task.queries) - len(todo), unit="q",
                       desc=f"retrieving {task.name}", disable=not show_progress, file=sys.stderr)
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                hits = retrieve(stores[collection], batch, depth)
                ids = [[p.id for p in passages] for passages in hits]
                hit_ranks = first_hit_ranks(ids, [q.positives for q in batch], dedup=False, on_empty="miss")
                pseudo = (pseudo_hit_ranks([[p.text for p in passages] for passages in hits],
                                           [q.answers for q in batch], on_empty="miss")
                          if benchmark.pseudo_recall else [None] * len(batch))
                rows = []
                for q, passages, rank, prank in zip(batch, hits, hit_ranks, pseudo):
                    row: dict[str, Any] = {"task": task.name, "id": q.id, "hit_rank": rank}
                    if benchmark.pseudo_recall:
                        row["pseudo_rank"] = prank  # passage texts are not stored: the first answer-bearing rank is
                    row["retrieved"] = [{"id": p.id, "score": None if p.score is None else round(float(p.score), 6)}
                                        for p in passages]
                    rows.append(row)
                write_jsonl(out / RETRIEVAL, rows, append=True)
                for row, passages in zip(rows, hits):
                    done[(task.name, row["id"])] = _Ranking(tuple(p.id for p in passages), row.get("pseudo_rank"))
                retrieved_this_run += len(batch)
                bar.update(len(batch))
            bar.close()
            rankings = [done[(task.name, q.id)] for q in task.queries]
            metrics = task_metrics(task.queries, [r.ids for r in rankings], task.ks,
                                   [r.pseudo_rank for r in rankings] if benchmark.pseudo_recall else None)
            per_task[task.name] = {**task.info, **metrics, "index": index}
            curves[task.name] = {k: metrics[f"recall@{k}"] for k in task.ks if metrics[f"recall@{k}"] is not None}
            if benchmark.pseudo_recall and metrics.get("n_pseudo"):
                curves[f"{task.name} pseudo"] = {k: metrics[f"pseudo_recall@{k}"] for k in task.ks}
    finally:
        for store in stores.values():
            store.close()
    elapsed = time.perf_counter() - started

    summary = benchmark.summarize(per_task) if benchmark.summarize else pooled_metrics(per_task, all_ks)
    summary.setdefault("n", sum(m["n"] for m in per_task.values()))
    malformed_passages = sum(m["index"]["malformed_rows"] for m in per_task.values())
    missing_passage_images = sum(m["index"]["missing_images"] for m in per_task.values())
    if benchmark.malformed.count or malformed_passages:
        notes.append(f"malformed rows skipped: {benchmark.malformed.count} in query files, {malformed_passages} in "
                     "corpora (see malformed_rows)")
    metrics = {
        "benchmark": benchmark.name,
        "split": benchmark.split,
        **benchmark.settings,
        **summary,
        "per_task": per_task,
        "ks": all_ks,
        "retrieval_depth": depth,
        "n_retrieved_this_run": retrieved_this_run,
        "seconds_this_run": round(elapsed, 1),
        "timings_ms_per_query": {k: round(v / max(1, retrieved_this_run), 2) for k, v in retrieve.timings.items()},
        "missing_images": {"queries": images.count, "query_examples": images.examples,
                           "passages": missing_passage_images},
        "malformed_rows": {"queries": benchmark.malformed.count, "query_examples": benchmark.malformed.examples[:20],
                           "passages": malformed_passages},
        "encoder": getattr(encoder, "name_or_path", None),
        "encoder_fingerprint": getattr(encoder, "fingerprint", None),
        "notes": notes,
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / REPORT).write_text(_report(benchmark, metrics), encoding="utf-8")
    plot_recall_at_k(curves, out / PLOT, f"{benchmark.name}: recall@k")
    return metrics


def _report(benchmark: RetrievalBenchmark, metrics: dict[str, Any]) -> str:
    from .report import recall_table

    def curve(m: dict[str, Any], name: str) -> dict[int, float]:
        return {int(key.split("@")[1]): v for key, v in m.items()
                if key.startswith(f"{name}@") and v is not None}

    per_task = metrics["per_task"]
    n = sum(m["n"] for m in per_task.values())
    lines = [f"# {benchmark.name}{f' ({benchmark.split})' if benchmark.split else ''}: {n} queries, "
             f"{len(per_task)} task(s)", ""]
    if benchmark.name == "mbeir":
        rows = {f"{name} ({m['dataset']}, {m['task']}; n={m['n']})": curve(m, "recall") for name, m in per_task.items()}
        lines += [f"## Recall@K (%), {metrics['pool']} pool", "", recall_table(rows, label="task"), ""]
        avg = metrics.get("average")
        lines.append(f"Average (UniIR's convention: R@5 per row, R@10 for Fashion200K and FashionIQ): "
                     f"{'n/a' if avg is None else f'{100 * avg:.2f}'} over {metrics['average_rows']} row(s).")
        if metrics.get("average_note"):
            lines.append(f"Note: the average is {metrics['average_note']}.")
    else:
        rows = {f"{name} (n={m['n']})": curve(m, "recall") for name, m in per_task.items()}
        rows[f"all (n={metrics['n']})"] = curve(metrics, "recall")
        lines += ["## Recall@K (%): a positive passage in the top K", "", recall_table(rows, label="task"), ""]
        pseudo = {f"{name} (n={m['n_pseudo']})": curve(m, "pseudo_recall") for name, m in per_task.items()
                  if m.get("n_pseudo")}
        if pseudo:
            pseudo[f"all (n={metrics['n_pseudo']})"] = curve(metrics, "pseudo_recall")
            lines += ["## Pseudo-recall@K (%): an answer in a top-K passage", "", recall_table(pseudo, label="task"), ""]
    lines += ["", "## Run", "", f"- encoder: `{metrics['encoder']}` (fingerprint {metrics['encoder_fingerprint']})",
              f"- retrieval depth: {metrics['retrieval_depth']}",
              f"- time per query (ms): {metrics['timings_ms_per_query']}"]
    for name, m in per_task.items():
        ix = m["index"]
        lines.append(f"- {name}: collection `{ix['collection']}`, {ix['passages']} passages "
                     f"({ix['indexed_this_run']} indexed this run), {ix['malformed_rows']} malformed rows, "
                     f"{ix['missing_images']} passage images missing")
    missing, malformed = metrics["missing_images"], metrics["malformed_rows"]
    lines.append(f"- query images missing (encoded from text): {missing['queries']}")
    lines += [f"  - {e}" for e in missing["query_examples"][:5]]
    lines.append(f"- malformed query rows skipped: {malformed['queries']}")
    lines += [f"  - {e}" for e in malformed["query_examples"][:5]]
    lines.append(f"- recall plot: ![recall@k]({PLOT})")
    lines += [f"- note: {note}" for note in metrics["notes"]]
    return "\n".join(lines) + "\n"
