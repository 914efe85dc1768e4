"""Answer accuracy of the KB-VQA pipeline on an E-VQA / InfoSeek split, with retrieval recall and a report.

``ret2vqa eval {infoseek,evqa}`` is a thin layer over :func:`run_benchmark`, which
takes any object with the :class:`rag.pipeline.Pipeline` interface
(``retrieve_batch``, ``generate_batch``, ``encoder``, ``generator``, ``config``):

* questions are read with the official-format loaders of :mod:`eval` and their images
  resolved from the dataset's layout;
* each batch of questions is retrieved (to ``depth`` passages, for recall@k) and answered
  from the top ``k``; the batch's answers are appended to ``predictions.jsonl`` (exactly
  the format ``ret2vqa score`` reads) and its rankings to ``retrieval.jsonl``, so an
  interrupted run picks up where it stopped;
* at the end, answer accuracy (the official metric), entity/article recall@k,
  pseudo-recall@k, ``metrics.json``, ``report.md`` and a ``recall_at_k.png`` plot.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from tqdm.auto import tqdm

from ret2vqa.errors import ConfigError, InputError, RowError
from ret2vqa.io import MalformedRows, iter_jsonl, write_jsonl

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RETRIEVAL = "retrieval.jsonl"
METRICS = "metrics.json"
REPORT = "report.md"
PLOT = "recall_at_k.png"
RUN = "run.json"


@dataclass
class BenchmarkQuestion:
    """One question to run: its id in the official files, text, image file and ground truth."""

    id: Any  # InfoSeek data_id (str) or E-VQA question_id (0-based row index)
    question: str
    image: str | None
    positives: list[str] = field(default_factory=list)  # entity QIDs (InfoSeek) / article URLs (E-VQA)
    answers: list[str] = field(default_factory=list)  # for pseudo-recall
    question_type: str | None = None


@dataclass
class Benchmark:
    """A loaded split: its questions and how to score predictions on it."""

    name: Literal["infoseek", "evqa"]
    questions: list[BenchmarkQuestion]
    id_field: str  # "data_id" or "question_id": the prediction files' id key
    score: Callable[[dict[Any, str]], dict[str, Any] | None]
    notes: list[str] = field(default_factory=list)
    missing_images: int = 0
    source: str | None = None  # the questions file (resolved), recorded in the run metadata
    image_policy: str = "error"  # an image that exists but cannot be decoded: "error" or "text_only"


def _sibling(path: Path, suffix: str) -> Path | None:
    """``infoseek_val.jsonl`` → ``infoseek_val_qtype.jsonl`` (when it exists)."""
    candidate = path.with_name(f"{path.stem}{suffix}.jsonl")
    return candidate if candidate.is_file() else None


def _image_or_policy(resolve: Callable[[], Path], missing_images: str, log: bool, what: str) -> str | None:
    """The question's image path, or ``None`` (logged when ``log``) when missing and the policy allows."""
    try:
        return str(resolve())
    except (FileNotFoundError, ValueError) as exc:
        if missing_images == "error":
            raise InputError(
                f"{what}: {exc} (pass --missing-images text_only to answer such questions without their image)"
            ) from exc
        if log:
            logger.warning("%s: %s; answering without the image", what, exc)
        return None


def load_infoseek(
    questions: str | Path, images: str | Path, qtype: str | Path | None = None, withkb: str | Path | None = None,
    limit: int | None = None, missing_images: str = "error", strict: bool = True,
) -> Benchmark:
    """InfoSeek questions (official jsonl) with OVEN images (sharded or flat layout under ``images``)."""
    from eval.infoseek import (
        OvenImageResolver,
        empty_split_note,
        iter_questions,
        load_entities,
        load_references,
        score_predictions,
    )

    questions = Path(questions)
    qtype = Path(qtype) if qtype else _sibling(questions, "_qtype")
    withkb = Path(withkb) if withkb else _sibling(questions, "_withkb")
    errors = MalformedRows(strict=strict)
    entities = load_entities(withkb, errors) if withkb else None
    resolver = OvenImageResolver(images)
    missing = 0
    items = []
    first_line: dict[str, int] = {}
    for q in iter_questions(questions, errors, entities=entities):
        if q.data_id in first_line:  # two answers for one id would be scored as one: never silently
            raise RowError(questions, q.line, f"duplicate data_id {q.data_id!r} (first at line "
                                              f"{first_line[q.data_id]}); each question needs its own id")
        first_line[q.data_id] = q.line
        if limit is not None and len(items) >= limit:
            continue  # read on: a duplicate id further down is still an error
        image = _image_or_policy(lambda: resolver.resolve(q.image_id), missing_images, missing < 5,
                                 f"{questions}:{q.line}")
        missing += image is None
        items.append(BenchmarkQuestion(
            id=q.data_id, question=q.question, image=image,
            positives=[q.entity_id] if q.entity_id else [],
            answers=[str(a) for a in (q.answer or [])], question_type=q.question_type,
        ))
    notes = []
    if errors.count:
        notes.append(f"{questions}: {errors.summary()}")
    if not withkb:
        notes.append("no *_withkb.jsonl file: entity recall@k is not computed (pass --withkb)")
    # The rows were checked (and malformed ones reported) above; read them again as references
    # quietly, so a lenient run scores the rows it kept. Without a qtype file the rows must carry
    # question_type themselves (the evaluator's internal form).
    ref_errors = MalformedRows(strict=strict and qtype is not None, max_logged=0)
    references = load_references(questions, qtype, ref_errors)
    if ref_errors.count > errors.count:  # rows the questions reader kept but the scorer cannot use
        if qtype is None:
            references = None
            notes.append(f"answer accuracy not computed: no question-type file beside {questions} and its rows "
                         f"carry no question_type (pass --qtype with the *_qtype.jsonl file)")
        else:
            notes.append(f"answer accuracy leaves out rows it cannot score: {ref_errors.summary()}")

    def score(predictions: dict[Any, str]) -> dict[str, Any] | None:
        if references is None:
            return None
        result = score_predictions(predictions, references)
        note = empty_split_note(result)
        if note and note not in notes:
            notes.append(note)
        return result.to_dict()

    return Benchmark("infoseek", items, "data_id", score, notes, missing, str(questions.resolve()), missing_images)


def load_evqa(
    questions: str | Path, images: str | Path, inat_id2name: str | Path | None = None,
    limit: int | None = None, missing_images: str = "error", single_hop: bool = False, bem: str | None = None,
    strict: bool = True,
) -> Benchmark:
    """E-VQA questions (official CSV). Images: ``images/<image_id>.jpg`` (flat), else the official
    layouts under ``images/inaturalist`` (with ``inat_id2name``) and ``images/landmarks``."""
    from eval.evqa import EVQAImageResolver, evaluate_predictions, load_questions
    from eval.retrieval import evqa_article_positives

    questions = Path(questions)
    images = Path(images)
    errors = MalformedRows(strict=strict)
    rows = load_questions(questions, errors)
    resolver = EVQAImageResolver(
        inaturalist_root=images / "inaturalist" if (images / "inaturalist").is_dir() else images,
        inaturalist_id2name=inat_id2name,
        landmarks_root=images / "landmarks" if (images / "landmarks").is_dir() else images,
    )

    def find(q) -> Path:
        image_id = q.image_ids[0]
        for ext in (".jpg", ".jpeg", ".png", ".JPEG", ".JPG"):
            flat = images / f"{image_id}{ext}"
            if flat.is_file():
                return flat
        return resolver.question_image(q)

    missing = 0
    items = []
    for q in rows:
        if q is None or (single_hop and q.question_type == "2_hop"):
            continue
        if limit is not None and len(items) >= limit:
            break
        image = _image_or_policy(lambda: find(q), missing_images, missing < 5, f"{questions}:{q.line}")
        missing += image is None
        items.append(BenchmarkQuestion(
            id=q.question_id, question=q.question, image=image, positives=evqa_article_positives(q),
            answers=[a for a in q.answers], question_type=q.question_type,
        ))
    notes = [f"{questions}: {errors.summary()}"] if errors.count else []
    bem_model = None
    if bem:
        from eval.evqa import BEMConfig, TransformersBEM

        bem_model = TransformersBEM(BEMConfig(name_or_path=bem))
    partial = limit is not None or single_hop

    def score(predictions: dict[Any, str]) -> dict[str, Any]:
        return evaluate_predictions(predictions, rows, bem=bem_model, missing="ignore" if partial else "zero")

    if partial:
        notes.append("a subset of the split was run: accuracy is over the questions answered (--missing ignore)")
    return Benchmark("evqa", items, "question_id", score, notes, missing, str(questions.resolve()), missing_images)


def _read_done(path: Path, key: str) -> dict[Any, dict[str, Any]]:
    """Rows already written by an earlier (possibly interrupted) run, by id (the last one wins)."""
    if not path.is_file():
        return {}
    done: dict[Any, dict[str, Any]] = {}
    errors = MalformedRows()  # a line cut by a crash is reported and redone
    for _, row in iter_jsonl(path, errors):
        if key in row:
            done[row[key]] = row
    return done


def _check_run_settings(out: Path, settings: dict[str, Any], done: str = PREDICTIONS) -> None:
    """Record what produced the results (``done``) in ``out``; refuse to resume them with other settings."""
    path = out / RUN
    if path.is_file() and (out / done).is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        # A key an older run did not record cannot be compared: it is recorded from now on.
        changed = {key: (previous[key], value) for key, value in settings.items()
                   if key in previous and previous[key] != value}
        if changed:
            what = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())
            raise ConfigError(
                f"{out} holds predictions made with other settings ({what}); resuming would mix them. "
                "Use another --out, or delete the directory to start over.", "--out"
            )
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _retrieve(pipeline: Any, benchmark: Benchmark, batch: list[BenchmarkQuestion], queries: list[dict[str, Any]],
              depth: int, timings: dict[str, float]) -> list[list[Any]]:
    """Retrieve for ``queries``; an image that cannot be decoded follows the benchmark's image policy.

    Under ``text_only`` the question is answered without it (logged and counted as a missing
    image, like a file that is not there); under ``error`` the run stops naming the question.
    """
    if not depth:
        return [[] for _ in batch]
    while True:
        try:
            return pipeline.retrieve_batch(queries, k=depth, timings=timings)
        except InputError as exc:  # an item error (retriever.ItemError) names the item's index
            index = getattr(exc, "index", None)
            if not isinstance(index, int) or not 0 <= index < len(queries) or queries[index]["image"] is None:
                raise
            question = batch[index]
            if benchmark.image_policy != "text_only":
                raise InputError(f"question {question.id!r}: {exc} (pass --missing-images text_only to answer "
                                 f"such questions without their image)") from exc
            logger.warning("question %r: %s; answering without the image", question.id, exc)
            queries[index]["image"] = None
            benchmark.missing_images += 1


def _recalls(benchmark: Benchmark, rankings: Sequence[dict[str, Any]], ks: list[int]) -> dict[str, dict[int, float]]:
    """Entity/article recall@k from the stored rankings, pseudo-recall@k from the stored first-hit ranks."""
    from eval.retrieval import recall_at_k, recall_from_ranks

    out: dict[str, dict[int, float]] = {}
    by_id = {q.id: q for q in benchmark.questions}
    rows = [r for r in rankings if r["id"] in by_id]
    level, field_name = ("entity", "entity_id") if benchmark.name == "infoseek" else ("article", "url")
    with_pos = [r for r in rows if by_id[r["id"]].positives]
    if with_pos:
        out[f"{level}_recall"] = recall_at_k(
            [[p.get(field_name) or f"<none:{p['id']}>" for p in r["retrieved"]] for r in with_pos],
            [by_id[r["id"]].positives for r in with_pos], ks=ks,
        )
    with_answers = [r for r in rows if any(a.strip() for a in by_id[r["id"]].answers)]
    if with_answers:
        out["pseudo_recall"] = recall_from_ranks([r.get("pseudo_rank") for r in with_answers], ks)
    return out


def run_benchmark(
    pipeline: Any, benchmark: Benchmark, out_dir: str | Path, k: int | None = None, depth: int | None = None,
    batch_size: int = 16, ks: Sequence[int] = (1, 5, 10, 20), show_progress: bool = True,
) -> dict[str, Any]:
    """Retrieve and answer every question of ``benchmark`` (resuming from ``out_dir``), then score.

    ``k`` passages reach the generator (default: the config's); retrieval goes ``depth``
    deep (default ``max(k, max(ks))``) so recall@k can be measured beyond ``k``.
    """
    from eval.report import plot_recall_at_k
    from eval.retrieval import pseudo_hit_ranks

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = pipeline.config.retrieval.k if k is None else int(k)
    depth = max(k, max(ks)) if depth is None else max(int(depth), k)
    ks = sorted({int(x) for x in ks if int(x) <= depth}) or [depth]
    _check_run_settings(out, {
        "benchmark": benchmark.name,
        "questions": benchmark.source,
        "store": pipeline.config.store.describe(),
        "encoder": getattr(pipeline.encoder, "name_or_path", None),
        "encoder_fingerprint": getattr(pipeline.encoder, "fingerprint", None),
        "generator": getattr(getattr(pipeline.generator, "config", None), "model", None),
        "k": k,
        "retrieval_depth": depth,
        "instruction": pipeline.config.retrieval.instruction,
        "use_image": pipeline.config.retrieval.use_image,
    })
    id_field = benchmark.id_field
    predictions = _read_done(out / PREDICTIONS, id_field)
    rankings = _read_done(out / RETRIEVAL, "id")
    todo = [q for q in benchmark.questions if q.id not in predictions]
    if predictions:
        logger.info("resuming: %d of %d questions already answered in %s", len(benchmark.questions) - len(todo),
                    len(benchmark.questions), out)
    timing_sums: dict[str, float] = {}
    bar = tqdm(total=len(benchmark.questions), initial=len(benchmark.questions) - len(todo), unit="q",
               desc=f"{benchmark.name}", disable=not show_progress, file=sys.stderr)
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        queries = [{"question": q.question, "image": q.image} for q in batch]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        retrieved = _retrieve(pipeline, benchmark, batch, queries, depth, timings)
        answers = pipeline.generate_batch(queries, [r[:k] for r in retrieved], timings=timings, started=t0)
        # Passage texts are not stored (they would dwarf the file): the pseudo-recall hit rank is kept instead.
        pseudo = pseudo_hit_ranks([[p.text for p in r] for r in retrieved], [q.answers for q in batch], on_empty="miss")
        ranking_rows = [
            {"id": q.id, "pseudo_rank": rank,
             "retrieved": [{"id": p.id, "score": round(p.score, 6), "title": p.title, "url": p.url,
                            "entity_id": p.entity_id} for p in passages]}
            for q, passages, rank in zip(batch, retrieved, pseudo)
        ]
        write_jsonl(out / RETRIEVAL, ranking_rows, append=True)  # rankings first: predictions mark a batch done
        prediction_rows = [{id_field: q.id, "prediction": a.answer} for q, a in zip(batch, answers)]
        write_jsonl(out / PREDICTIONS, prediction_rows, append=True)
        for row in ranking_rows:
            rankings[row["id"]] = row
        for row in prediction_rows:
            predictions[row[id_field]] = row
        for key, value in timings.items():
            timing_sums[key] = timing_sums.get(key, 0.0) + value
        bar.update(len(batch))
    bar.close()
    elapsed = time.perf_counter() - started

    answered = {qid: row["prediction"] for qid, row in predictions.items()}
    answer_metrics = benchmark.score(answered)
    recalls = _recalls(benchmark, list(rankings.values()), ks)
    metrics: dict[str, Any] = {
        "benchmark": benchmark.name,
        "n_questions": len(benchmark.questions),
        "n_answered_this_run": len(todo),
        "k": k,
        "retrieval_depth": depth,
        "answer": answer_metrics,
        "retrieval": {name: {str(kk): round(v, 4) for kk, v in values.items()} for name, values in recalls.items()},
        "missing_images": benchmark.missing_images,
        "timings_ms_per_question": {key: round(v / max(1, len(todo)), 1) for key, v in timing_sums.items()},
        "seconds_this_run": round(elapsed, 1),
        "notes": benchmark.notes,
        "encoder": getattr(pipeline.encoder, "name_or_path", None),
        "generator": getattr(getattr(pipeline.generator, "config", None), "model", None),
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_report(out, benchmark, metrics, recalls)
    plot_recall_at_k(recalls, out / PLOT, f"{benchmark.name}: retrieval recall@k")
    return metrics


def _write_report(out: Path, benchmark: Benchmark, metrics: dict[str, Any],
                  recalls: dict[str, dict[int, float]]) -> None:
    from eval.report import markdown_report

    results: dict[str, Any] = {}
    if metrics["answer"] is not None:
        results[f"{benchmark.name} (k={metrics['k']})"] = metrics["answer"]
    results.update(recalls)
    title = f"{benchmark.name}: {metrics['n_questions']} questions"
    body = markdown_report(results, title=title) if results else f"# {title}\n"
    lines = [body.rstrip(), "", "## Run", "",
             f"- encoder: `{metrics['encoder']}`", f"- generator: `{metrics['generator']}`",
             f"- passages given to the generator (k): {metrics['k']}; retrieval depth: {metrics['retrieval_depth']}",
             f"- time per question (ms): {metrics['timings_ms_per_question']}",
             f"- questions answered without their image: {metrics['missing_images']}",
             f"- recall plot: ![recall@k]({PLOT})"]
    lines += [f"- note: {n}" for n in metrics["notes"]]
    (out / REPORT).write_text("\n".join(lines) + "\n", encoding="utf-8")
