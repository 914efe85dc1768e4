"""Micro-batching: concurrent requests are encoded, searched and answered together.

Two worker threads own the models, one per stage, so that the next batch is retrieved
while the current one is generated (the stages overlap wherever the models release the
GIL, in their kernels, Pillow and the tokenizers):

* retrieval (``ret2vqa-retrieve``): takes the first waiting job and then gathers more, up
  to ``max_batch_size`` and only while more work is known to be coming: the batch waits
  for as many jobs as there were requests in the server lately (:class:`RecentPeak`: the
  clients that are active), plus any still being received (``incoming``). A lone client
  therefore never waits for a batch that will not fill. It waits at most ``max_wait_ms``,
  counted from when the generator could take the batch: while a batch of answer jobs could
  not be generated anyway (the generator is busy), gathering more costs none of them any
  time. That also lets two groups of clients that fell out of step (one late request splits
  a batch in two, and the halves keep alternating) merge again into full batches. A batch
  is one encoder call and one store search per distinct ``k``; search jobs are answered
  here, and the answer jobs' prompts are built (by the generation workers instead, when there are
  any: :mod:`rag.serve.workers`);
* generation (``ret2vqa-generate``): one batched generation (left padding) per batch that
  retrieval hands over. At most one batch waits between the stages, so requests that
  arrive meanwhile make the next batch bigger instead of queueing behind small ones.

Request handlers (on the event loop) put a :class:`Job` on a queue and await its future;
there is no thread hop per request. A batch that fails in either stage is retried there
one job at a time, so one bad request never fails the others.
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

#: How long a peak of concurrent requests is remembered (:class:`RecentPeak`).
ACTIVE_WINDOW_S = 0.5


class RecentPeak:
    """The largest value held over about the last ``window_s`` seconds (two half-window buckets).

    Fed the number of requests in the server at each change. That number drops to nearly zero
    each time a batch is answered and its clients are sending their next requests; its recent
    peak is how many clients are active, which is what a batch can wait for.
    """

    def __init__(self, window_s: float = ACTIVE_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.half = window_s / 2
        self.clock = clock
        self._bucket = 0  # index of the current half-window
        self._latest = 0
        self._current = 0
        self._previous = 0
        self._lock = threading.Lock()  # updated on the event loop, read by the retrieval worker

    def _roll(self, now: float) -> None:
        bucket = int(now / self.half)
        if bucket != self._bucket:  # a value held since an earlier bucket is still held now
            self._previous = self._current if bucket == self._bucket + 1 else self._latest
            self._current = self._latest
            self._bucket = bucket

    def update(self, value: int) -> None:
        with self._lock:
            self._roll(self.clock())
            self._latest = value
            self._current = max(self._current, value)

    @property
    def value(self) -> int:
        with self._lock:
            self._roll(self.clock())
            return max(self._current, self._previous)


class QueueFull(Exception):
    """More requests are waiting than ``serve.max_queue`` allows."""


@dataclass
class Retrieved:
    """A batch between the stages: its answer jobs, their passages and prompts, and the times so far."""

    jobs: list[Job]
    passages: list[list[Any]]
    prompts: list[Any] | None  # None: built in generation (generation workers build their own)
    timings: list[dict[str, float]]  # per job
    batch_timings: dict[str, float]
    batch_size: int  # of the whole micro-batch, search jobs included
    queue_ms: list[float]

    def split(self) -> list["Retrieved"]:
        """One batch per job (to find which one fails)."""
        prompts = self.prompts if self.prompts is not None else [None] * len(self.jobs)
        return [Retrieved([job], [passages], None if prompt is None else [prompt], [timings], dict(self.batch_timings),
                          self.batch_size, [queued])
                for job, passages, prompt, timings, queued in
                zip(self.jobs, self.passages, prompts, self.timings, self.queue_ms)]


class Batcher:
    """Runs the jobs of ``pipeline`` in micro-batches, retrieval and generation on a thread each."""

    def __init__(self, pipeline: Any, max_batch_size: int = 8, max_wait_ms: float = 10.0, max_queue: int = 256,
                 on_batch: Callable[[int, dict[str, float]], None] | None = None):
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        #: Called once per micro-batch with its size and its stage times (ms), when it is done.
        self.on_batch = on_batch
        self._incoming = 0
        self._open = 0  # jobs submitted and not yet settled (event loop side)
        #: Recent peak of requests in the server (being received, queued or in a stage): the active clients.
        self.active = RecentPeak()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._retrieved: queue.Queue = queue.Queue(maxsize=1)  # retrieval runs at most one batch ahead
        self._generating = False
        self._threads = [threading.Thread(target=self._run_retrieval, name="ret2vqa-retrieve", daemon=True),
                         threading.Thread(target=self._run_generation, name="ret2vqa-generate", daemon=True)]
        self._started = False
        # The store is used from the retrieval worker (searches) and from request threads (passage lookups).
        self._store_lock = threading.Lock()

    @property
    def builds_prompts(self) -> bool:
        """Whether retrieval builds the answer jobs' prompts (overlapping the previous batch's generation);
        generation workers (:mod:`rag.serve.workers`) build them in parallel themselves."""
        return hasattr(getattr(self.pipeline, "generator", None), "build_prompt")

    def lookup(self, passage_id: str) -> list[Any]:
        """The stored passage ``passage_id`` (``[]`` if none), safe beside the worker's searches."""
        with self._store_lock:
            return self.pipeline.store.retrieve([passage_id])

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float | None = None) -> None:
        """Finish every job already queued, then stop the workers."""
        if self._started:
            self._queue.put(_STOP)
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in self._threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def incoming(self) -> int:
        """Requests accepted by the HTTP layer but not yet queued (being received or decoded)."""
        return self._incoming

    @incoming.setter
    def incoming(self, value: int) -> None:  # set on the event loop, like _open
        self._incoming = value
        self._count_in_server()

    def _settled(self, future: asyncio.Future) -> None:
        self._open -= 1
        self._count_in_server()

    def _count_in_server(self) -> None:
        """Feed :attr:`active` the requests now in the server: being received, or jobs not yet settled."""
        self.active.update(self._incoming + self._open)

    # ------------------------------------------------------------------ submitting (event loop side)
    def submit(self, kind: str, question: str, image: Any, k: int) -> Job:
        """Queue a job; await ``job.future`` for its :class:`JobResult`. Raises :class:`QueueFull`."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are waiting (serve.max_queue)")
        loop = asyncio.get_running_loop()
        job = Job(kind, question, image, k, loop.create_future(), loop)
        self._open += 1
        job.future.add_done_callback(self._settled)
        self._count_in_server()
        self._queue.put(job)
        return job

    def _generator_busy(self) -> bool:
        return self._generating or not self._retrieved.empty()

    # ------------------------------------------------------------------ stage 1: retrieval
    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch, stop = [first], False
        deadline = time.perf_counter() + self.max_wait_s
        answers_only = first.kind == "answer"
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                target = min(self.max_batch_size, max(self.active.value, len(batch) + self.incoming))
                if answers_only and self._generator_busy():  # the wait starts when the generator is free
                    deadline = max(deadline, time.perf_counter() + self.max_wait_s)
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
            answers_only = answers_only and item.kind == "answer"  # a search is answered without the generator
        return batch, stop

    def _run_retrieval(self) -> None:
        stop = False
        try:
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch, stop = self._gather(first)
                jobs = [job for job in batch if not job.cancelled]
                for job in batch:
                    if job.cancelled:  # its request gave up waiting (timeout): settle it, nobody awaits the result
                        _on_loop(job, job.future.cancel)
                if jobs:
                    try:
                        self._retrieve(jobs, len(jobs))
                    except BaseException as exc:  # pragma: no cover - _retrieve reports errors per job
                        logger.exception("batch failed")
                        for job in jobs:
                            _resolve(job, exc=exc)
        finally:
            self._retrieved.put(_STOP)

    def _retrieve(self, jobs: list[Job], batch_size: int) -> None:
        try:
            retrieved = self._retrieval_stage(jobs, batch_size)
        except Exception as exc:
            if len(jobs) > 1:  # find the culprit: one bad request must not fail the others
                for job in jobs:
                    self._retrieve([job], batch_size)
                return
            _resolve(jobs[0], exc=exc)
            return
        if retrieved is not None:
            self._retrieved.put(retrieved)

    def _retrieval_stage(self, jobs: list[Job], batch_size: int) -> Retrieved | None:
        """Encode and search ``jobs``; answer the search jobs; build the answer jobs' prompts."""
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
        prompts: list[Any] | None = None
        if answering and self.builds_prompts:
            start = time.perf_counter()
            prompts = pipeline.build_prompts([Query(jobs[i].question, jobs[i].image) for i in answering],
                                             [retrieved[i] for i in answering])
            prompt_ms = (time.perf_counter() - start) * 1000.0
            batch_timings["generate_ms"] = prompt_ms  # prompt building is part of generation, as in `ask`
            for i in answering:
                per_job[i]["generate_ms"] = prompt_ms / len(answering)
        for i, job in enumerate(jobs):
            if job.kind != "answer":
                timings = dict(per_job[i])
                timings["total_ms"] = sum(timings.values())
                _resolve(job, value=JobResult(retrieved[i], timings, batch_size, queue_ms[i]))
        if not answering:
            self._observe(len(jobs), batch_timings)
            return None
        return Retrieved([jobs[i] for i in answering], [retrieved[i] for i in answering], prompts,
                         [per_job[i] for i in answering], batch_timings, batch_size, [queue_ms[i] for i in answering])

    # ------------------------------------------------------------------ stage 2: generation
    def _run_generation(self) -> None:
        while (batch := self._retrieved.get()) is not _STOP:
            self._generating = True
            try:
                self._generate(batch)
            except BaseException as exc:  # pragma: no cover - _generate reports errors per job
                logger.exception("batch failed")
                for job in batch.jobs:
                    _resolve(job, exc=exc)
            finally:
                self._generating = False

    def _generate(self, batch: Retrieved) -> None:
        try:
            results = self._generation_stage(batch)
        except Exception as exc:
            if len(batch.jobs) > 1:
                for single in batch.split():
                    self._generate(single)
                return
            _resolve(batch.jobs[0], exc=exc)
            return
        for job, result in zip(batch.jobs, results):
            _resolve(job, value=result)

    def _generation_stage(self, batch: Retrieved) -> list[JobResult]:
        from rag.pipeline import Query

        start = time.perf_counter()
        answers = self.pipeline.generate_batch([Query(job.question, job.image) for job in batch.jobs], batch.passages,
                                               prompts=batch.prompts)
        generate_ms = (time.perf_counter() - start) * 1000.0
        timings = dict(batch.batch_timings)
        timings["generate_ms"] = timings.get("generate_ms", 0.0) + generate_ms
        self._observe(batch.batch_size, timings)
        results = []
        for answer, job_timings, queue_ms in zip(answers, batch.timings, batch.queue_ms):
            job_timings = dict(job_timings)
            job_timings["generate_ms"] = job_timings.get("generate_ms", 0.0) + generate_ms / len(batch.jobs)
            job_timings["total_ms"] = sum(job_timings.values())
            answer.timings = job_timings
            results.append(JobResult(answer, job_timings, batch.batch_size, queue_ms))
        return results

    def _observe(self, size: int, timings: dict[str, float]) -> None:
        if self.on_batch is not None:
            timings = dict(timings)
            timings["total_ms"] = sum(timings.values())
            self.on_batch(size, timings)


def _resolve(job: Job, value: Any = None, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the request timed out or its client went away
            return
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(value)

    _on_loop(job, settle)


def _on_loop(job: Job, callback: Callable[[], Any]) -> None:
    """Run ``callback`` on the event loop of ``job``'s request (futures are not thread-safe)."""
    try:
        job.loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop is closed (shutdown): nobody is waiting
        pass
