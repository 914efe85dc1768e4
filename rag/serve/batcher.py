"""Micro-batching: concurrent requests are encoded, searched and answered together.

One worker thread owns the models. Request handlers (on the event loop) put a
:class:`Job` on a queue and await its future; there is no thread hop per request. The
worker takes the first waiting job and then gathers more, up to ``max_batch_size``,
waiting at most ``max_wait_ms``, and only while more work is known to be coming: other
requests still being received (``incoming``) or a previous batch that was larger than
one (several clients are active). A lone client therefore never waits for a batch that
will not fill. A batch is one encoder call and one store search per distinct ``k``, then
one batched generation (left padding) for the jobs that want an answer.

A failing batch is retried one job at a time, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request waiting for the worker: ``kind`` is ``"answer"`` or ``"search"``."""

    kind: str
    question: str
    image: Any
    k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


@dataclass
class JobResult:
    """What a job gets back: a ``PipelineAnswer`` (answer jobs) or a passage list (search jobs) and batch facts."""

    value: Any
    timings: dict[str, float]
    batch_size: int
    queue_ms: float


_STOP = object()


class QueueFull(Exception):
    """More requests are waiting than ``serve.max_queue`` allows."""


class Batcher:
    """Runs the jobs of ``pipeline`` in micro-batches on one worker thread."""

    def __init__(self, pipeline: Any, max_batch_size: int = 8, max_wait_ms: float = 10.0, max_queue: int = 256,
                 on_batch: Callable[[int, dict[str, float]], None] | None = None):
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        #: Requests accepted by the HTTP layer but not yet queued (being received or decoded).
        self.incoming = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._last_batch = 1
        self._thread = threading.Thread(target=self._run, name="ret2vqa-batcher", daemon=True)
        self._started = False
        # The store is used from the worker (searches) and from request threads (passage lookups).
        self._store_lock = threading.Lock()

    def lookup(self, passage_id: str) -> list[Any]:
        """The stored passage ``passage_id`` (``[]`` if none), safe beside the worker's searches."""
        with self._store_lock:
            return self.pipeline.store.retrieve([passage_id])

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every job already queued, then stop the worker."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------------ submitting (event loop side)
    def submit(self, kind: str, question: str, image: Any, k: int) -> Job:
        """Queue a job; await ``job.future`` for its :class:`JobResult`. Raises :class:`QueueFull`."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are waiting (serve.max_queue)")
        loop = asyncio.get_running_loop()
        job = Job(kind, question, image, k, loop.create_future(), loop)
        self._queue.put(job)
        return job

    # ------------------------------------------------------------------ the worker
    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch, stop = [first], False
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                target = min(self.max_batch_size, max(self._last_batch, len(batch) + self.incoming))
                remaining = deadline - time.perf_counter()
                if len(batch) >= target or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.002))
                except queue.Empty:
                    continue
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._gather(first)
            jobs = [job for job in batch if not job.cancelled]
            self._last_batch = len(batch)
            if jobs:
                try:
                    self._process(jobs)
                except BaseException as exc:  # pragma: no cover - _process reports errors per job
                    logger.exception("batch failed")
                    for job in jobs:
                        _resolve(job, exc=exc)

    def _process(self, jobs: list[Job]) -> None:
        try:
            results = self._run_batch(jobs)
        except Exception as exc:
            if len(jobs) > 1:  # find the culprit: one bad request must not fail the others
                for job in jobs:
                    self._process([job])
                return
            _resolve(jobs[0], exc=exc)
            return
        for job, result in zip(jobs, results):
            _resolve(job, value=result)

    def _run_batch(self, jobs: list[Job]) -> list[JobResult]:
        from rag.pipeline import Query

        pipeline = self.pipeline
        started = time.perf_counter()
        queue_ms = [(started - job.enqueued) * 1000.0 for job in jobs]
        retrieved: list[list[Any]] = [[] for _ in jobs]
        per_job: list[dict[str, float]] = [{} for _ in jobs]
        by_k: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            by_k.setdefault(job.k, []).append(i)
        batch_timings: dict[str, float] = {"encode_ms": 0.0, "search_ms": 0.0}
        for k, members in by_k.items():
            timings: dict[str, float] = {}
            with self._store_lock:
                hits = pipeline.retrieve_batch([Query(jobs[i].question, jobs[i].image) for i in members], k=k,
                                               timings=timings)
            for i, passages in zip(members, hits):
                retrieved[i] = passages
                per_job[i] = {key: value / len(members) for key, value in timings.items()}
            for key, value in timings.items():
                batch_timings[key] = batch_timings.get(key, 0.0) + value
        answering = [i for i, job in enumerate(jobs) if job.kind == "answer"]
        values: list[Any] = list(retrieved)
        if answering:
            start = time.perf_counter()
            answers = pipeline.generate_batch([Query(jobs[i].question, jobs[i].image) for i in answering],
                                              [retrieved[i] for i in answering])
            generate_ms = (time.perf_counter() - start) * 1000.0
            batch_timings["generate_ms"] = generate_ms
            for i, answer in zip(answering, answers):
                per_job[i]["generate_ms"] = generate_ms / len(answering)
                values[i] = answer
        total_ms = (time.perf_counter() - started) * 1000.0
        batch_timings["total_ms"] = total_ms
        if self.on_batch is not None:
            self.on_batch(len(jobs), batch_timings)
        results = []
        for i, job in enumerate(jobs):
            timings = dict(per_job[i])
            timings["total_ms"] = sum(timings.values())
            if job.kind == "answer":
                values[i].timings = timings
            results.append(JobResult(values[i], timings, len(jobs), queue_ms[i]))
        return results


def _resolve(job: Job, value: Any = None, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the request timed out or its client went away
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(value)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed (shutdown): nobody is waiting
        pass
