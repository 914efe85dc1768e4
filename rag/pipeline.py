"""The KB-VQA pipeline: question + image → ReT-2 retrieval → multimodal LLM answer with sources.

    pipeline = Pipeline.from_config("configs/cpu.yaml")
    result = pipeline.answer("Which year was this building completed?", "photo.jpg", k=5)
    result.answer, result.passages[0].title, result.timings

The encoder, the store and the generator are built from one :class:`PipelineConfig` by
the composition root (:mod:`rag.components`), which refuses a collection built by
another encoder instead of silently returning nonsense. Every method takes
``(question, image)`` in that order. Batched variants (:meth:`Pipeline.answer_batch`)
encode, search and generate a batch at a time, which is what benchmark evaluation uses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ret2vqa.errors import ConfigError, InputError
from ret2vqa.passage import Passage

from .config import PipelineConfig, load_pipeline_config

logger = logging.getLogger(__name__)


@dataclass
class PipelineAnswer:
    """An answer with its sources and per-stage timings (milliseconds)."""

    question: str
    answer: str
    passages: list[Passage]
    timings: dict[str, float]
    raw_text: str = ""
    prompt_tokens: int = 0
    passages_used: int = 0
    image: str | None = None
    prompt: str = ""

    def to_dict(self, with_prompt: bool = False) -> dict[str, Any]:
        data = {
            "question": self.question,
            "image": self.image,
            "answer": self.answer,
            "raw_text": self.raw_text,
            "passages_used": self.passages_used,
            "prompt_tokens": self.prompt_tokens,
            "passages": [p.to_dict() for p in self.passages],
            "timings_ms": {k: round(v, 1) for k, v in self.timings.items()},
        }
        if with_prompt:
            data["prompt"] = self.prompt
        return data


@dataclass
class Query:
    """One retrieval/answering request: a question and (optionally) an image (path or PIL image)."""

    question: str
    image: Any = None

    @classmethod
    def coerce(cls, obj: Any) -> "Query":
        """A string, ``{"question", "image"}`` or ``(question, image)``."""
        if isinstance(obj, Query):
            return obj
        if isinstance(obj, str):
            return cls(question=obj)
        if isinstance(obj, Mapping):
            question = obj.get("question", obj.get("query", obj.get("text")))
            if not isinstance(question, str) or not question.strip():
                raise InputError(f"a query needs a non-empty 'question' string, got {dict(obj)!r}")
            return cls(question=question, image=obj.get("image"))
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            question, image = obj
            return cls(question=question, image=image)
        raise TypeError(f"cannot use a {type(obj).__name__} as a query: pass a string, {{'question', 'image'}} "
                        f"or (question, image)")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Pipeline:
    """Retrieval-augmented answering over a ReT-2 encoder, a vector store and a multimodal LLM."""

    def __init__(self, encoder: Any, store: Any, generator: Any = None, config: PipelineConfig | None = None):
        self.encoder = encoder
        self.store = store
        self.generator = generator
        self.config = config or PipelineConfig(generator=None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, config: "str | Path | PipelineConfig | Mapping[str, Any] | None" = None, load_generator: bool = True,
        encoder: Any = None, shared: bool = False,
    ) -> "Pipeline":
        """Build encoder, store and (unless ``load_generator=False``) generator from a config.

        ``encoder``: one already loaded for ``config.encoder`` (e.g. after indexing with it).
        The store must already hold a collection built by this encoder (``ret2vqa index
        build``); a missing collection or one built by another encoder raises with a
        message that says so. With no encoder configured, the collection's own is used.
        ``shared``: share the open collection with the other users of it in this process
        (:func:`rag.store.open_shared`; the LangChain adapters do), instead of locking it.
        """
        from .components import build_generator, open_collection

        cfg = load_pipeline_config(config)
        store, encoder = open_collection(cfg, encoder, shared=shared)
        try:
            generator = build_generator(cfg.generator) if load_generator and cfg.generator is not None else None
        except BaseException:
            store.close()
            raise
        return cls(encoder, store, generator, cfg)

    def image_root(self) -> Path | None:
        """The directory this collection's relative passage image paths are relative to (``None``: unknown):
        the config's ``ingest.image_root``, else the recorded one, else the KB file's folder
        (:func:`rag.ingest.indexer.collection_image_root`)."""
        from .ingest.indexer import collection_image_root

        return collection_image_root(self.store, self.config.ingest.image_root)

    def close(self) -> None:
        """Close the store (and the generator, when it holds resources of its own, such as worker processes)."""
        self.store.close()
        close_generator = getattr(self.generator, "close", None)
        if close_generator is not None:
            close_generator()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ retrieval
    def _k(self, k: int | None) -> int:
        k = self.config.retrieval.k if k is None else int(k)
        if k < 0:
            raise ConfigError(f"must be >= 0, got {k}", "k")
        return k

    def retrieve_batch(
        self, queries: Sequence[Any], k: int | None = None, filter: Mapping[str, Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[list[Passage]]:
        """Top-``k`` passages for each query (``Query``, ``{"question", "image"}``, ``(question, image)`` or a string)."""
        queries = [Query.coerce(q) for q in queries]
        k = self._k(k)
        if k == 0 or not queries:
            return [[] for _ in queries]
        settings = self.config.retrieval
        start = time.perf_counter()
        vectors = self.encode_queries(queries)
        encode_ms = _ms(start)
        start = time.perf_counter()
        hits = self.store.search_batch(vectors, k=k, filter=filter if filter is not None else settings.filter)
        search_ms = _ms(start)
        if timings is not None:
            timings["encode_ms"] = timings.get("encode_ms", 0.0) + encode_ms
            timings["search_ms"] = timings.get("search_ms", 0.0) + search_ms
        return hits

    def encode_queries(self, queries: Sequence[Any]) -> Any:
        """The query vectors (N, dim) of ``queries``, embedded as :meth:`retrieve_batch` embeds them, in one pass."""
        queries = [Query.coerce(q) for q in queries]
        settings = self.config.retrieval
        images = [q.image if settings.use_image else None for q in queries]
        return self.encoder.encode_queries(
            [q.question for q in queries], images=images, instruction=settings.instruction,
            batch_size=self.config.encoder.batch_size,
        )

    def retrieve(self, question: str, image: Any = None, k: int | None = None,
                 filter: Mapping[str, Any] | None = None) -> list[Passage]:
        """Top-``k`` passages for one question (with its image, if any)."""
        return self.retrieve_batch([Query(question, image)], k=k, filter=filter)[0]

    # ------------------------------------------------------------------ answering
    def answer_batch(
        self, queries: Sequence[Any], k: int | None = None, filter: Mapping[str, Any] | None = None
    ) -> list[PipelineAnswer]:
        """Answer several questions: one encoder batch, one batched search, batched generation."""
        queries = [Query.coerce(q) for q in queries]
        start = time.perf_counter()
        timings: dict[str, float] = {"encode_ms": 0.0, "search_ms": 0.0}
        retrieved = self.retrieve_batch(queries, k=k, filter=filter, timings=timings)
        return self.generate_batch(queries, retrieved, timings=timings, started=start)

    def _require_generator(self) -> Any:
        if self.generator is None:
            raise ConfigError("this pipeline has no generator (config `generator: null` or load_generator=False)",
                              "generator")
        return self.generator

    def build_prompts(self, queries: Sequence[Any], retrieved: Sequence[Sequence[Passage]]) -> list[Any]:
        """The generator's prompt for each query and its passages (what :meth:`generate_batch` would build).

        Building them apart lets a server prepare the next batch's prompts while the model
        generates the current one (:class:`rag.serve.batcher.Batcher`).
        """
        generator = self._require_generator()
        queries = [Query.coerce(q) for q in queries]
        return [generator.build_prompt(q.question, q.image, passages) for q, passages in zip(queries, retrieved)]

    def generate_batch(
        self, queries: Sequence[Any], retrieved: Sequence[Sequence[Passage]],
        timings: dict[str, float] | None = None, started: float | None = None, prompts: Sequence[Any] | None = None,
    ) -> list[PipelineAnswer]:
        """Answer each query from its (already retrieved) passages, in the given rank order.

        ``prompts``: the queries' prompts when already built (:meth:`build_prompts`).
        """
        generator = self._require_generator()
        from generator import GenerationRequest

        queries = [Query.coerce(q) for q in queries]
        timings = dict(timings or {})
        start = time.perf_counter()
        requests = [GenerationRequest(question=q.question, image=q.image, passages=list(passages))
                    for q, passages in zip(queries, retrieved)]
        results = generator.generate(requests, prompts=prompts)
        timings["generate_ms"] = _ms(start)
        timings["total_ms"] = _ms(started if started is not None else start)
        # Per-item timings of a batch are the batch's divided by its size.
        per_item = {key: value / max(1, len(queries)) for key, value in timings.items()}
        return [
            PipelineAnswer(
                question=q.question,
                answer=r.answer,
                passages=list(passages),
                timings=dict(per_item),
                raw_text=r.raw_text,
                prompt_tokens=r.prompt_tokens,
                passages_used=r.passages_used,
                image=str(q.image) if isinstance(q.image, (str, Path)) else None,
                prompt=getattr(r, "prompt", ""),
            )
            for q, passages, r in zip(queries, retrieved, results)
        ]

    def answer(self, question: str, image: Any = None, k: int | None = None,
               filter: Mapping[str, Any] | None = None) -> PipelineAnswer:
        """Answer one visual question: the answer, its sources (ids, scores) and timings per stage."""
        return self.answer_batch([Query(question, image)], k=k, filter=filter)[0]
