"""Generation in worker processes (``serve.generation_workers``): the generator outside the server's GIL.

In one process the server's stages share one GIL: the event loop (HTTP), retrieval and
generation take turns wherever they run Python, and with small models nearly all of their
time is Python (``transformers``' per-step code, the processors, the prompt builder). Two
threads generating two halves of a batch take longer than one thread generating the whole
batch. Worker processes each hold their own copy of the generator and their own GIL, as
TorchServe's and Triton's CPU workers do:

* a micro-batch is split into contiguous parts, one per worker, generated side by side; a
  single request goes to the first worker alone;
* each worker builds its requests' prompts (the prompt builder runs there too, in parallel);
* when the workers' intra-op threads fit in the cores this process may use, each worker is
  pinned to its own cores, so that they neither migrate nor compete for one core, and
  :func:`generator.attention.spare_threads` finds no idle core to spread onto;
* images are cut towards the generator's image side (:func:`ret2vqa.images.reduce_to_side`,
  what the prompt builder does first anyway, so prompts are the same) before they are sent, so
  a photo crosses the process boundary at the model's size, not the upload's.

Answers are those of the in-process generator (the same config, the same prompts; tested).
An exception raised for a batch in a worker is raised here (the batcher then retries the batch
one request at a time, as for an in-process failure). A worker that dies (killed, out of
memory) fails the batch it held and is restarted for the next one.

The cost: each worker loads its own copy of the generator (memory x ``generation_workers``)
and the server takes longer to start. Worth it when generation is bound by Python rather than
by the device: small models on CPU. With a large model on a GPU, leave it at 0 (generate in
the server process).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
from dataclasses import replace
from typing import Any, Sequence

from generator.config import GeneratorConfig
from generator.schema import GenerationRequest, GenerationResult

logger = logging.getLogger(__name__)

#: Seconds a worker may take to load its generator before the server gives up starting.
START_TIMEOUT_S = 600.0


def _worker_main(conn: Any, config: GeneratorConfig, threads: int | None, cores: list[int] | None) -> None:
    """A worker process: build the generator, then answer ``list[GenerationRequest]`` messages until ``None``.

    Ctrl-C and SIGTERM sent to the whole process group (a terminal, systemd) are left to the server,
    which stops its workers once its in-flight requests are answered; a worker whose server is gone
    sees its pipe close and exits.
    """
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if cores is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        from rag.components import build_generator

        generator = build_generator(config)
    except BaseException as exc:  # reported to the server, which raises it
        conn.send(("error", _picklable(exc)))
        return
    conn.send(("ready", generator.prompt_builder.image_side))
    while True:
        try:
            requests = conn.recv()
        except (EOFError, OSError):  # the server went away
            return
        if requests is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", generator.generate(requests))
        except Exception as exc:
            reply = ("error", _picklable(exc))
        conn.send(reply)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else the nearest class of its own that does, with its message.

    Its type reaches the server that way: a user error stays a 4xx in the API and one ``error:``
    line in the CLI (``ModelUnavailableError``, whose constructor takes more than a message, arrives
    as the :class:`~ret2vqa.errors.UserError` it is).
    """
    for cls in type(exc).__mro__:
        candidate = exc if cls is type(exc) else None
        try:
            if candidate is None:
                if not issubclass(cls, BaseException):
                    continue
                candidate = cls(str(exc))
            return pickle.loads(pickle.dumps(candidate))
        except Exception:
            continue
    return RuntimeError(f"{type(exc).__name__}: {exc}")  # pragma: no cover - BaseException always pickles


class WorkerDiedError(RuntimeError):
    """A generation worker process ended while it held a batch (it is restarted for the next one)."""


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, index: int, config: GeneratorConfig, threads: int | None, cores: list[int] | None):
        self.index, self.config, self.threads, self.cores = index, config, threads, cores
        self.process: Any = None
        self.conn: Any = None
        self.image_side: int | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads and a store
        parent, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, self.config, self.threads, self.cores),
                                       name=f"ret2vqa-generate-{self.index}", daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        if not self.conn.poll(timeout):
            self.stop()
            raise RuntimeError(f"generation worker {self.index} did not load its generator within {timeout:.0f} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            code = self.process.exitcode if self.process is not None else None
            raise WorkerDiedError(f"generation worker {self.index} exited while loading (exit code {code})") from None
        if status == "error":
            self.stop()
            raise value
        self.image_side = value

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def send(self, requests: list[GenerationRequest]) -> None:
        self.conn.send(requests)

    def receive(self) -> list[GenerationResult]:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise WorkerDiedError(f"generation worker {self.index} died while generating "
                                  f"(exit code {self.process.exitcode}); it is restarted for the next batch") from None
        if status == "error":
            raise value
        return value

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        try:
            if self.process.is_alive():
                self.conn.send(None)
        except OSError:  # BrokenPipeError included
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process = None


def split_evenly(items: list[Any], count: int) -> list[list[Any]]:
    """``items`` in at most ``count`` contiguous non-empty parts whose sizes differ by one at most."""
    parts = min(count, len(items))
    size, extra = divmod(len(items), parts) if parts else (0, 0)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]


def worker_cores(count: int, threads: int | None) -> tuple[int, list[list[int]] | None]:
    """Intra-op threads per worker and the cores each is pinned to (``None``: not pinned).

    ``threads`` unset: the cores this process may use, shared out. Pinned only when every worker's
    threads fit on cores of its own.
    """
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    per_worker = threads or max(1, len(available) // count)
    if count * per_worker > len(available) or not hasattr(os, "sched_setaffinity"):
        return per_worker, None
    return per_worker, [available[i * per_worker:(i + 1) * per_worker] for i in range(count)]


class GenerationWorkers:
    """``count`` worker processes, each with the generator of ``config``: a drop-in for
    :meth:`generator.MultimodalGenerator.generate` in :class:`rag.pipeline.Pipeline`.

    Prompts are built in the workers (there is no ``build_prompt`` here: the server's retrieval
    stage leaves that to generation). Start is synchronous: the constructor returns when every
    worker has loaded its generator. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, config: GeneratorConfig, count: int, torch_threads: int | None = None):
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.config = config
        threads, cores = worker_cores(count, torch_threads)
        self._workers = [_Worker(i, config, threads, cores[i] if cores else None) for i in range(count)]
        self._lock = threading.Lock()  # one batch at a time: each worker's pipe carries one request and its reply
        try:
            for worker in self._workers:  # all load at once
                worker.start()
            for worker in self._workers:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        self.image_side = self._workers[0].image_side
        logger.info("%d generation worker(s) ready (%s)", count,
                    ", ".join(f"cores {w.cores}" if w.cores else "not pinned" for w in self._workers))

    @property
    def count(self) -> int:
        return len(self._workers)

    @property
    def alive(self) -> bool:
        return all(worker.alive for worker in self._workers)

    def generate(self, requests: Sequence[GenerationRequest], *,
                 prompts: Sequence[Any] | None = None) -> list[GenerationResult]:
        """The results of ``requests`` in their order, their parts generated side by side in the workers.

        ``prompts`` must be ``None``: the workers build them (prompts built here would have to be
        sent across, and building them is part of what the workers parallelise).
        """
        from ret2vqa.images import load_image, reduce_to_side

        if prompts is not None:
            raise ValueError("GenerationWorkers build the prompts themselves: pass prompts=None")
        items = [replace(r, image=reduce_to_side(load_image(r.image), self.image_side)) if r.image is not None else r
                 for r in requests]
        if not items:
            return []
        with self._lock:
            parts = split_evenly(items, len(self._workers))
            busy = self._workers[:len(parts)]
            for worker in busy:
                if not worker.alive:  # died since the last batch (or while holding it): a fresh one
                    logger.warning("generation worker %d is not running: restarting it", worker.index)
                    worker.stop()
                    worker.start()
                    worker.wait_ready()
            failure: BaseException | None = None
            sent = []
            for worker, part in zip(busy, parts):
                try:
                    worker.send(part)
                    sent.append(worker)
                except OSError as exc:  # it died after the check above: restarted next time
                    failure = failure or WorkerDiedError(f"generation worker {worker.index} died before its part "
                                                         f"of the batch reached it: {exc}")
            results: list[GenerationResult] = []
            for worker in sent:  # every reply is read, so that no pipe is left holding a stale one
                try:
                    results.extend(worker.receive())
                except BaseException as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure
            return results

    def close(self) -> None:
        """Stop the workers (each finishes the batch it holds)."""
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> "GenerationWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GenerationWorkers({self.config.model!r}, count={self.count})"
