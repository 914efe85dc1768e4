"""Building a collection from a KB file: read passages, encode in batches, upsert, checkpoint.

Resumable by construction, kill -9 included:

1. readers are deterministic and ordered, and every passage has a :class:`Position`;
2. each batch is encoded, upserted and flushed (durable), and only then is the
   progress record saved, atomically, with the position after the batch's last
   passage and the running counters;
3. a new run with the same KB and passage options resumes from that position. A batch
   that was upserted but not recorded is simply encoded and upserted again: point ids
   are UUID5 of the passage ids, so it overwrites itself instead of duplicating.

The progress record lives with the collection (``rag.store.VectorStore.save_state``),
keyed by a hash of the KB path, size, format and passage options, so several KBs can
be indexed into one collection and each resumes on its own. ``restart=True`` ignores
it and re-indexes from the start (overwriting, not duplicating).
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ret2vqa.errors import CollectionDamagedError, ConfigError, InputError
from ret2vqa.io import MalformedRows
from ret2vqa.passage import Passage

from .distributed import SingleProcess, detect_processes
from .integrity import count_problem, expected_points, verify_collection
from .readers import KBReader, Position, make_reader

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import PipelineConfig

logger = logging.getLogger(__name__)

STATE_NAME = "ingest"


def collection_image_root(store: Any, configured: str | None = None) -> Path | None:
    """The directory a collection's relative passage image paths are relative to (``None``: unknown).

    ``configured`` (the current config's ``ingest.image_root``) when given, else the
    ``ingest.image_root`` recorded when the collection was built, else the directory of the
    knowledge-base file it was indexed from: where the readers resolved relative paths
    (:mod:`rag.ingest.readers`). The server serves passage images from it, and the LangChain
    adapters turn stored paths into absolute ones with it.
    """
    root = configured
    if not root:
        try:
            root = (store.metadata.config.get("ingest") or {}).get("image_root")
        except AttributeError:  # a store without metadata
            root = None
    if root:
        return Path(root).expanduser().resolve()
    try:
        states = store.load_state(STATE_NAME) or {}
    except Exception:  # a store without state records (or one that cannot read them) has no known root
        return None
    for state in states.values():
        source = (state or {}).get("source") or {}
        if source.get("path"):
            return Path(source["path"]).expanduser().resolve().parent
    return None


@dataclass
class IndexReport:
    """What an indexing run did; :meth:`summary` is printed at the end of ``index build``."""

    kb: str
    format: str
    store: str
    passages_total: int = 0
    passages_this_run: int = 0
    resumed_from: int = 0
    collection_count: int = 0
    complete: bool = False
    optimized: bool = False
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    missing_images: int = 0
    missing_image_examples: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stopped_at_limit: bool = False
    processes: int = 1
    main_process: bool = True
    #: Passages whose id an earlier passage of the KB already had (the later one overwrote it).
    duplicate_ids: int = 0
    #: Points found missing (the store held fewer than the progress records) and re-indexed by this run.
    repaired: int = 0

    @property
    def passages_per_s(self) -> float:
        return self.passages_this_run / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        status = "complete" if self.complete else ("stopped at --limit" if self.stopped_at_limit else "incomplete")
        resumed = f", resumed after {self.resumed_from}" if self.resumed_from else ""
        lines = [
            f"indexed {self.passages_total} passages of {self.kb} ({self.format}) into {self.store} [{status}]: "
            f"{self.passages_this_run} this run{resumed} in {self.seconds:.1f} s ({self.passages_per_s:.1f} passages/s"
            f"{f', encoded on {self.processes} processes' if self.processes > 1 else ''}); "
            f"the collection holds {self.collection_count} points"
        ]
        if self.repaired:
            lines.append(f"repaired: the collection had lost {self.repaired} points; this KB was re-indexed "
                         f"from the start to restore them")
        if self.duplicate_ids:
            lines.append(f"duplicate passage ids: {self.duplicate_ids} passages reused the id of an earlier one and "
                         f"overwrote it ({self.passages_total - self.duplicate_ids} distinct passages)")
        if self.malformed:
            examples = "; ".join(self.malformed_examples[:3])
            lines.append(f"malformed rows skipped: {self.malformed} (e.g. {examples})")
        else:
            lines.append("malformed rows skipped: 0")
        skipped = ", ".join(f"{n} {what}" for what, n in sorted(self.skipped.items()) if n)
        if skipped:
            lines.append(f"skipped on purpose: {skipped}")
        if self.missing_images:
            examples = "; ".join(self.missing_image_examples[:3])
            lines.append(f"passage images missing, encoded text-only: {self.missing_images} (e.g. {examples})")
        else:
            lines.append("passage images missing, encoded text-only: 0")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["passages_per_s"] = self.passages_per_s
        return data


class _Bar:
    """tqdm over the KB (records, for an ETA) or over ``limit`` passages, showing passages/s."""

    def __init__(self, reader: KBReader, limit: int | None, done: int, start: Position | None, count: bool, enabled: bool):
        from tqdm.auto import tqdm

        self.t0 = time.monotonic()
        self.run_passages = 0
        self.by_passages = limit is not None
        self.record_offset = 0 if reader.record_is_line else 1
        if self.by_passages:
            total, initial, unit = limit, min(done, limit), "passage"
        else:
            total = reader.count_records() if (count and enabled) else None
            initial = (start.record + self.record_offset) if start else 0
            unit = "line" if reader.record_is_line else "article"
        self.bar = tqdm(
            total=total, initial=initial, unit=unit, desc=f"indexing {reader.path.name}", disable=not enabled,
            dynamic_ncols=True, smoothing=0.1,
        )

    def advance(self, passages: int, done: int, last: Position) -> None:
        self.run_passages += passages
        target = done if self.by_passages else last.record + self.record_offset
        self.bar.update(max(0, target - self.bar.n))
        rate = self.run_passages / max(time.monotonic() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{done} passages, {rate:.1f} passages/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _batches(stream: Iterator[tuple[Passage, Position]], size: int, budget: int | None) -> Iterator[list[tuple[Passage, Position]]]:
    """Group the stream into lists of ``size``, stopping after ``budget`` passages (None: no limit)."""
    batch: list[tuple[Passage, Position]] = []
    taken = 0
    if budget is not None and budget <= 0:
        return
    for item in stream:
        batch.append(item)
        taken += 1
        if len(batch) == size:
            yield batch
            batch = []
        if budget is not None and taken >= budget:
            break
    if batch:
        yield batch


@dataclass
class _Snapshot:
    """The reader's counters at the moment a batch was complete (the reading thread runs ahead)."""

    malformed: int
    examples: list[str]
    skipped: dict[str, int]


def _prefetched(batches: Iterator[list[tuple[Passage, Position]]], errors: MalformedRows, reader: KBReader,
                depth: int = 2) -> Iterator[tuple[list[tuple[Passage, Position]], _Snapshot]]:
    """Read (and parse) the next batches in a thread while the current one is encoded.

    Each batch comes with a snapshot of the malformed-row and skip counters taken when
    it was complete, so the progress record never counts rows read ahead of it. An
    exception in the reader (e.g. a malformed row in strict mode) is re-raised here.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                snap = _Snapshot(errors.count, list(errors.examples), dict(reader.skipped))
                if not put((batch, snap)):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="kb-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _Writer:
    """Runs the store writes of successive batches in order, in one thread, behind the encoder.

    At most ``depth`` batches wait (bounded memory); an error in a write is raised in the
    caller at its next :meth:`submit` or at :meth:`drain`. Each write is complete on its own
    (upsert, flush, then the progress record), so stopping at any point leaves a resumable
    collection.
    """

    def __init__(self, depth: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-writer")
        self.depth = depth
        self.pending: list[Any] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self._collect(wait_until=self.depth)
        self.pending.append(self.pool.submit(fn, *args))

    def _collect(self, wait_until: int) -> None:
        while self.pending and (len(self.pending) > wait_until or self.pending[0].done()):
            self.pending.pop(0).result()  # re-raises a failed write

    def drain(self) -> None:
        self._collect(wait_until=0)

    def close(self) -> None:
        """Let the writes already submitted finish (each is durable and recorded), then stop."""
        self.pool.shutdown(wait=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_index(
    config: "PipelineConfig",
    kb: str | Path,
    fmt: str,
    *,
    limit: int | None = None,
    restart: bool = False,
    show_progress: bool = True,
    encoder: Any = None,
    store_kwargs: dict[str, Any] | None = None,
) -> IndexReport:
    """Index KB file ``kb`` (format ``fmt``) into the collection of ``config.store``.

    ``config`` is a :class:`rag.config.PipelineConfig` (its ``encoder``, ``store`` and
    ``ingest`` sections). ``limit``: index only the first ``limit`` passages of the KB (a
    later run with a larger limit, or none, continues). ``restart``: ignore saved
    progress. ``encoder``: an already loaded encoder (else the composition root builds
    ``config.encoder``). Returns an :class:`IndexReport`; raises on the first malformed
    row when ``config.ingest.strict``.
    """
    from rag.components import build_encoder, open_collection

    if limit is not None and limit < 0:
        raise ConfigError(f"must be >= 0, got {limit}", "--limit")
    procs = detect_processes()
    ingest = config.ingest
    errors = MalformedRows(strict=ingest.strict, max_kept=ingest.max_error_examples)
    reader = make_reader(fmt, kb, ingest, errors)
    if encoder is None:
        encoder = build_encoder(config.encoder, device=procs.device)

    store = None
    plan: dict[str, Any] = {}
    if procs.is_main_process:
        store, _ = open_collection(config, encoder, create=True, extra_metadata={"ingest": ingest.passage_options()},
                                   **(store_kwargs or {}))
    try:
        if procs.is_main_process:
            for name in dict.fromkeys([reader.key_field, *config.store.payload_indexes]):
                if name:
                    store.create_payload_index(name)
            states = store.load_state(STATE_NAME) or {}
            key = reader.source_hash()
            count = store.count()
            files = verify_collection(store, states, sample=8, search=False)  # a few points read back: cheap
            if not files.ok and not files.repairable:
                raise files.error()
            missing = count_problem(count, expected_points(states))
            repaired = 0
            if missing and key in states:
                repaired = expected_points(states) - count
                logger.warning("%s: %s; re-indexing %s from the start to restore them",
                               config.store.describe(), missing, kb)
                if show_progress:
                    print(f"repairing {config.store.describe()}: {missing}; re-indexing {kb} from the start",
                          file=sys.stderr, flush=True)
                restart = True
            elif missing:
                raise _damaged(config, missing, states)
            state = None if restart else states.get(key)
            if state is None:
                state = {
                    "source": reader.source_key(), "next": None, "passages": 0, "points": 0, "duplicates": 0,
                    "malformed": 0, "malformed_examples": [], "missing_images": 0, "missing_image_examples": [],
                    "skipped": {}, "complete": False, "optimized": False, "started_at": _now(), "runs": 0,
                }
            state["runs"] = int(state.get("runs", 0)) + 1
            # Points already in the store that this KB's records do not account for (a batch written
            # just before a crash, or a restart): re-upserting them adds nothing and is no duplicate.
            others = expected_points({k: v for k, v in states.items() if k != key}) or 0
            tracker = _PointTracker(count, max(0, count - others - int(state.get("points") or 0)))
            plan = {"key": key, "state": state, "repaired": repaired}
        plan = procs.broadcast(plan)
        state = plan["state"]
        report = IndexReport(
            kb=str(kb), format=fmt, store=config.store.describe(), resumed_from=int(state["passages"]),
            processes=procs.num_processes, main_process=procs.is_main_process, repaired=int(plan.get("repaired", 0)),
        )
        if procs.num_processes > 1:
            logger.info("process %d of %d encodes its slice of every batch", procs.process_index, procs.num_processes)
        t0 = time.monotonic()
        start = Position.from_dict(state["next"]) if state["next"] else None
        done = int(state["passages"])
        budget = None if limit is None else max(0, limit - done)
        counters = _Counters(state, errors, reader, ingest.max_error_examples)
        if state["complete"] or budget == 0:
            logger.info("nothing to index: %s", "the KB is fully indexed" if state["complete"] else f"--limit {limit} reached")
            report.stopped_at_limit = not state["complete"]
        else:
            bar = _Bar(reader, limit, done, start, ingest.count_records, show_progress and procs.is_main_process)

            def commit(batch: list[tuple[Passage, Position]], vectors: np.ndarray, bad: list, snap: _Snapshot,
                       done: int) -> None:
                """Upsert one encoded batch, make it durable, then record the progress (in this order)."""
                store.upsert([p.id for p, _ in batch], vectors, [p.payload for p, _ in batch])
                store.flush()  # durable before the progress record says so
                tracker.after_upsert(len(batch), store.count(), state)
                last = batch[-1][1]
                state["next"] = Position(last.record, last.chunk + 1).to_dict()
                state["passages"] = done
                counters.add_missing_images(bad, batch)
                counters.fold_into(state, snap)
                state["updated_at"] = _now()
                store.save_state(STATE_NAME, {**states, plan["key"]: state})
                bar.advance(len(batch), done, last)

            # Reading runs ahead in one thread and writing behind in another, so the encoder
            # (which decodes the next images while the device works) is never idle for them.
            writer = _Writer() if procs.is_main_process else None
            try:
                stream = _batches(reader.passages(start), ingest.batch_size, budget)
                for batch, snap in _prefetched(stream, errors, reader):
                    vectors, bad = _encode(encoder, batch, config, procs)
                    done += len(batch)
                    if writer is not None:
                        writer.submit(commit, batch, vectors, bad, snap, done)
                if writer is not None:
                    writer.drain()
            finally:
                if writer is not None:
                    writer.close()
                bar.close()
            # A run that stops at --limit cannot know whether passages follow without reading on.
            report.stopped_at_limit = budget is not None and done - report.resumed_from >= budget
            state["complete"] = not report.stopped_at_limit
        if procs.is_main_process and done == 0 and not report.stopped_at_limit and reader.path.stat().st_size > 0:
            counters.fold_into(state)
            raise _nothing_read(kb, fmt, state)
        if procs.is_main_process:
            counters.fold_into(state)
            added = done - report.resumed_from
            if ingest.optimize and (added or not state.get("optimized")) and store.count():
                logger.info("optimizing %s (building the HNSW index)", config.store.describe())
                if show_progress:
                    print(f"building the search index of {config.store.describe()} ...", file=sys.stderr, flush=True)
                store.optimize()
                state["optimized"] = True
            elif added:
                state["optimized"] = False
            state["updated_at"] = _now()
            store.save_state(STATE_NAME, {**states, plan["key"]: state})
            report.collection_count = store.count()
            still = count_problem(report.collection_count, expected_points({**states, plan["key"]: state}))
            if still:
                raise _damaged(config, still, {k: v for k, v in states.items() if k != plan["key"]})
        report.passages_total = done
        report.passages_this_run = done - report.resumed_from
        report.complete = bool(state["complete"])
        report.optimized = bool(state.get("optimized"))
        report.malformed = int(state["malformed"])
        report.malformed_examples = list(state["malformed_examples"])
        report.missing_images = int(state["missing_images"])
        report.missing_image_examples = list(state["missing_image_examples"])
        report.skipped = dict(state["skipped"])
        report.duplicate_ids = int(state.get("duplicates") or 0)
        report.seconds = time.monotonic() - t0
        procs.barrier()
        return report
    except BaseException:
        if procs.is_main_process and plan:
            logger.warning(
                "indexing stopped; progress is saved (%d passages). Run the same command again to resume.",
                int(plan["state"]["passages"]),
            )
        raise
    finally:
        if store is not None:
            store.close()


class _PointTracker:
    """Counts the distinct points each batch adds, so duplicate passage ids are reported, not hidden.

    ``surplus``: points already in the store that the progress records do not account for;
    re-upserting them adds no point and is not a duplicate.
    """

    def __init__(self, count: int, surplus: int):
        self.count = count
        self.surplus = surplus

    def after_upsert(self, batch_size: int, count: int, state: dict) -> None:
        added = count - self.count
        self.count = count
        same_id = max(0, batch_size - added)
        absorbed = min(self.surplus, same_id)
        self.surplus -= absorbed
        if state.get("points") is not None:  # progress records of older versions do not track points
            state["points"] = int(state["points"]) + added + absorbed
            state["duplicates"] = int(state.get("duplicates") or 0) + same_id - absorbed


def _damaged(config: "PipelineConfig", problem: str, states: dict[str, Any]) -> CollectionDamagedError:
    sources = [s.get("source", {}) for s in states.values()]
    runs = "; ".join(f"`ret2vqa index build --kb {s.get('path')} --format {s.get('format')} --restart`"
                     for s in sources if s.get("path")) or "`ret2vqa index build ... --restart` for each KB"
    return CollectionDamagedError(
        f"{config.store.describe()}: {problem}. Re-index the knowledge bases it was built from to restore them "
        f"({runs}), or move the collection away and build it again"
    )


def _nothing_read(kb: Any, fmt: str, state: dict[str, Any]) -> InputError:
    from .readers import READERS

    why = []
    if state["malformed"]:
        why.append(f"{state['malformed']} malformed rows, e.g. {state['malformed_examples'][0]}")
    skipped = ", ".join(f"{n} {what}" for what, n in sorted(state["skipped"].items()) if n)
    if skipped:
        why.append(f"skipped: {skipped}")
    return InputError(
        f"read 0 passages from {kb} as format '{fmt}'" + (f" ({'; '.join(why)})" if why else "")
        + f": is --format right? (formats: {', '.join(READERS)})"
    )


def _encode(encoder: Any, batch: list[tuple[Passage, Position]], config: "PipelineConfig", procs: SingleProcess):
    """Encode this process's slice of ``batch``; on the main process return all vectors + bad images."""
    from retriever import RetrievalItem

    mine = procs.split(len(batch))
    bad: list[tuple[int, str]] = []

    def record_bad(index: int, message: str) -> None:  # the item is then encoded from its text alone
        bad.append((mine.start + index, message))

    on_bad = record_bad if config.ingest.on_missing_image == "text_only" else None

    items = [RetrievalItem(text=batch[i][0].text or None, image=batch[i][0].image) for i in mine]
    vectors = (
        encoder.encode(items, batch_size=config.encoder.batch_size, on_bad_image=on_bad, side="document")
        if items
        else np.zeros((0, *getattr(encoder, "output_shape", (int(encoder.embedding_dim),))), dtype=np.float32)
    )
    gathered = procs.gather((np.asarray(vectors, dtype=np.float32), bad))
    all_vectors = np.concatenate([v for v, _ in gathered], axis=0)
    all_bad = [b for _, bs in gathered for b in bs]
    return all_vectors, all_bad


class _Counters:
    """Malformed rows, purposeful skips and missing images: saved totals + this run's counts.

    The reader's :class:`MalformedRows` and skip counter only see this run; the state
    keeps the totals of earlier runs, so the final summary covers the whole build.
    """

    def __init__(self, state: dict, errors: MalformedRows, reader: KBReader, keep: int):
        self.errors = errors
        self.reader = reader
        self.keep = keep
        self.base_malformed = int(state["malformed"])
        self.base_examples = list(state["malformed_examples"])
        self.base_skipped = {k: int(v) for k, v in state["skipped"].items()}
        self.base_missing = int(state["missing_images"])
        self.base_missing_examples = list(state["missing_image_examples"])
        self.missing = 0
        self.missing_examples: list[str] = []

    def add_missing_images(self, bad: list[tuple[int, str]], batch: list[tuple[Passage, Position]]) -> None:
        self.missing += len(bad)
        for index, message in bad:
            if len(self.missing_examples) < self.keep:
                self.missing_examples.append(f"passage {batch[index][0].id}: {message}")

    def fold_into(self, state: dict, snap: _Snapshot | None = None) -> None:
        """Totals into ``state``: as of ``snap`` (a checkpoint) or of now (the end of the run)."""
        if snap is None:
            snap = _Snapshot(self.errors.count, list(self.errors.examples), dict(self.reader.skipped))
        state["malformed"] = self.base_malformed + snap.malformed
        state["malformed_examples"] = (self.base_examples + snap.examples)[: self.keep]
        skipped = dict(self.base_skipped)
        for what, n in snap.skipped.items():
            skipped[what] = skipped.get(what, 0) + int(n)
        state["skipped"] = skipped
        state["missing_images"] = self.base_missing + self.missing
        state["missing_image_examples"] = (self.base_missing_examples + self.missing_examples)[: self.keep]
