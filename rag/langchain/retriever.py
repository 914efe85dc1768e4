"""``ReT2Retriever``: a LangChain ``BaseRetriever`` over the ReT-2 encoder and the project's store.

What LangChain users rely on, and what this class guarantees:

* queries in every shape LangChain code produces (:mod:`rag.langchain.queries`): text,
  ``{"question", "image"}``, messages and content blocks; the input schema describes the
  question + image object, so ``retriever.as_tool()`` takes an image;
* ``k``, ``filter``, ``search_type`` and ``search_kwargs`` on the retriever or per call,
  sync and async alike; an unknown option is an error (:mod:`rag.langchain.search`);
* ``batch`` / ``abatch`` embed every query in one encoder pass and search in one batch;
  with ``return_exceptions=True`` a bad item (missing image, empty question) is that
  item's error and the others are answered;
* every retriever run that starts ends (``on_retriever_end`` or ``on_retriever_error``);
* built with :meth:`ReT2Retriever.from_config`, the collection is shared with the other
  retrievers and stores of the process (:func:`rag.store.open_shared`); :meth:`close`
  (or ``with``) releases it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, ensure_config, get_config_list
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ret2vqa.images import load_image

from ..pipeline import Pipeline, Query
from .documents import passage_to_document
from .queries import describe_query, parse_query
from .search import SearchOptions, run_search

__all__ = ["MultimodalQuery", "ReT2Retriever"]


class MultimodalQuery(BaseModel):
    """A search query: a question, optionally about an image (a plain string is accepted too)."""

    question: str = Field("", description="The question or search text.")
    image: str | None = Field(None, description="The image the question is about: a local file path, an http(s) "
                                                "URL or a data: URI with base64 data.")


class ReT2Retriever(BaseRetriever):
    """Multimodal retriever: ReT-2 embeddings of (question, image) searched in the collection.

    ``ReT2Retriever.from_config("configs/cpu.yaml", k=5)`` builds it from a pipeline config;
    ``ReT2Retriever(pipeline=...)`` wraps an open :class:`~rag.pipeline.Pipeline`.
    ``k`` (``None``: the config's ``retrieval.k``), ``filter`` (``None``: the config's),
    ``search_type`` and ``search_kwargs`` are the defaults every call may override.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Pipeline
    k: int | None = None
    filter: dict[str, Any] | None = None
    search_type: str = "similarity"
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    _owns_pipeline: bool = PrivateAttr(default=False)
    _image_root: Any = PrivateAttr(default=False)  # False: not looked up yet

    def __init__(self, **data: Any):
        super().__init__(**data)
        self._options({})  # a bad option is a ConfigError when the retriever is built, not at first use

    # ------------------------------------------------------------------ construction and closing
    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> "ReT2Retriever":
        """A retriever over the encoder and collection of a pipeline config (no generator is loaded).

        The collection is opened shared, so several retrievers (and ``ReT2VectorStore``\\ s)
        of one process may use it at once; :meth:`close` releases this one's handle.
        """
        pipeline = Pipeline.from_config(config, load_generator=False, shared=True)
        try:
            retriever = cls(pipeline=pipeline, **kwargs)
        except BaseException:
            pipeline.close()
            raise
        retriever._owns_pipeline = True
        return retriever

    def close(self) -> None:
        """Release the collection when this retriever opened it (``from_config``); idempotent."""
        if self._owns_pipeline:
            self._owns_pipeline = False
            self.pipeline.close()

    def __enter__(self) -> "ReT2Retriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ schema
    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        """The question + image object (strings, messages and content blocks are accepted as well)."""
        return MultimodalQuery

    # ------------------------------------------------------------------ the work, without callbacks
    def _options(self, kwargs: dict[str, Any]) -> SearchOptions:
        defaults = {"k": self.k if self.k is not None else self.pipeline.config.retrieval.k,
                    "filter": self.filter if self.filter is not None else self.pipeline.config.retrieval.filter,
                    "search_type": self.search_type}
        return SearchOptions.resolve(defaults, {"search_kwargs": self.search_kwargs}, kwargs)

    def _prepare(self, item: Any) -> Query:
        """The item as a query with its image opened (a missing or unreadable image fails this item only)."""
        query = parse_query(item)
        if query.image is not None and self.pipeline.config.retrieval.use_image:
            return Query(query.question, load_image(query.image))
        return Query(query.question)

    def _prepare_all(self, inputs: list[Any]) -> list[Any]:
        """:meth:`_prepare` of each input (the query, or the exception it raised); images are opened in parallel."""

        def prepare(item: Any) -> Any:
            try:
                return self._prepare(item)
            except Exception as exc:  # noqa: BLE001
                return exc

        if len(inputs) < 2:
            return [prepare(item) for item in inputs]
        workers = max(1, min(8, len(inputs), int(getattr(self.pipeline.encoder, "image_workers", 4) or 1)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(prepare, inputs))

    def _image_base(self) -> Path | None:
        if self._image_root is False:
            self._image_root = self.pipeline.image_root()
        return self._image_root

    def _search(self, queries: list[Query], options: SearchOptions) -> list[list[Document]]:
        vectors = self.pipeline.encode_queries(queries)
        rows = run_search(self.pipeline.store, vectors, options)
        base = self._image_base()
        return [[passage_to_document(p, base) for p in row] for row in rows]

    def _compute(self, inputs: list[Any], options: SearchOptions, isolate: bool) -> list[Any]:
        """Documents or the exception, per input: prepared one by one, embedded and searched together.

        ``isolate``: when the batch as a whole fails, answer the items one at a time so that
        only the failing ones carry the error.
        """
        results: list[Any] = [None] * len(inputs)
        prepared: list[tuple[int, Query]] = []
        for i, outcome in enumerate(self._prepare_all(inputs)):
            if isinstance(outcome, Exception):
                results[i] = outcome  # reported as this item's error
            else:
                prepared.append((i, outcome))
        if not prepared:
            return results
        try:
            rows = self._search([q for _, q in prepared], options)
        except Exception as exc:  # noqa: BLE001
            if not isolate or len(prepared) == 1:
                for i, _ in prepared:
                    results[i] = exc
                return results
            for i, query in prepared:
                try:
                    results[i] = self._search([query], options)[0]
                except Exception as item_exc:  # noqa: BLE001
                    results[i] = item_exc
            return results
        for (i, _), docs in zip(prepared, rows):
            results[i] = docs
        return results

    def _get_relevant_documents(self, query: Any, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        result = self._compute([query], self._options(kwargs), isolate=False)[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def _aget_relevant_documents(self, query: Any, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        options = self._options(kwargs)
        result = (await run_in_executor(None, self._compute, [query], options, False))[0]
        if isinstance(result, Exception):
            raise result
        return result

    # ------------------------------------------------------------------ callbacks
    def _manager(self, config: RunnableConfig, cls: Any, kwargs: dict[str, Any]) -> Any:
        return cls.configure(
            config.get("callbacks"), None, verbose=bool(kwargs.get("verbose", False)),
            inheritable_tags=config.get("tags"), local_tags=self.tags,
            inheritable_metadata={**(config.get("metadata") or {}), **self._get_ls_params()},
            local_metadata=self.metadata,
        )

    @staticmethod
    def _split(inputs: list[Any], config: Any, kwargs: dict[str, Any]) -> tuple[list[RunnableConfig], dict]:
        configs = [ensure_config(c) for c in get_config_list(config, len(inputs))]
        run_id = kwargs.pop("run_id", None)
        if run_id is not None and len(configs) == 1:
            configs[0]["run_id"] = run_id
        kwargs.pop("verbose", None)
        return configs, kwargs

    # ------------------------------------------------------------------ Runnable interface
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> list[Document]:
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> list[Document]:
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Retrieve for many queries: one encoder pass, one batched search, one retriever run per query."""
        if not inputs:
            return []
        flags = dict(kwargs)
        configs, kwargs = self._split(inputs, config, kwargs)
        runs = [
            self._manager(cfg, CallbackManager, flags).on_retriever_start(
                None, describe_query(item), name=cfg.get("run_name") or self.get_name(), run_id=cfg.pop("run_id", None))
            for item, cfg in zip(inputs, configs)
        ]
        try:
            results = self._compute(list(inputs), self._options(kwargs), isolate=return_exceptions)
        except Exception as exc:  # options invalid for the whole call
            results = [exc] * len(inputs)
        for run, result in zip(runs, results):
            if isinstance(result, Exception):
                run.on_retriever_error(result)
            else:
                run.on_retriever_end(result)
        return _finish(results, return_exceptions)

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """:meth:`batch` for async code: the encoder and store run in a worker thread, callbacks are awaited."""
        if not inputs:
            return []
        flags = dict(kwargs)
        configs, kwargs = self._split(inputs, config, kwargs)
        runs = await asyncio.gather(*(
            self._manager(cfg, AsyncCallbackManager, flags).on_retriever_start(
                None, describe_query(item), name=cfg.get("run_name") or self.get_name(), run_id=cfg.pop("run_id", None))
            for item, cfg in zip(inputs, configs)
        ))
        try:
            options = self._options(kwargs)
            results = await run_in_executor(configs[0], self._compute, list(inputs), options, return_exceptions)
        except Exception as exc:
            results = [exc] * len(inputs)
        await asyncio.gather(*(
            run.on_retriever_error(result) if isinstance(result, Exception) else run.on_retriever_end(result)
            for run, result in zip(runs, results)
        ))
        return _finish(results, return_exceptions)


def _finish(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results
