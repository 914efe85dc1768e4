"""LangChain integration: a multimodal retriever, an answering chain and a text embeddings adapter.

* :class:`ReT2Retriever` — a ``BaseRetriever`` over our encoder and store. ``invoke``
  takes a text query (``"Who designed the Eiffel Tower?"``) or a multimodal one
  (``{"question": "...", "image": "photo.jpg"}``) and returns ``Document`` objects with
  the passage text as ``page_content`` and id, title, url/entity, score and image path
  in ``metadata``. ``batch`` embeds all queries in one encoder pass.
* :func:`build_answer_chain` — an LCEL ``Runnable`` from ``{"question", "image"}`` to
  ``{"answer", "sources"}`` composing that retriever with our generator.
* :class:`ReT2Embeddings` — ``Embeddings`` for text-only use, e.g. with ``langchain-qdrant``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableParallel, ensure_config
from pydantic import ConfigDict

from ret2vqa.passage import Passage

from .pipeline import Pipeline, Query


def passage_to_document(passage: Passage) -> Document:
    """A retrieved passage as a LangChain ``Document`` (text + id/title/url/entity/score/image)."""
    metadata = {
        "id": passage.id,
        "title": passage.title,
        "url": passage.url,
        "entity_id": passage.entity_id,
        "score": passage.score,
        "image": passage.image,
    }
    return Document(page_content=passage.text, metadata={k: v for k, v in metadata.items() if v is not None},
                    id=passage.id)


def _query_text(query: Any) -> str:
    """A serialisable description of a query for callbacks/tracing (images stay out of traces)."""
    q = Query.coerce(query)
    return q.question if q.image is None else f"{q.question} [image: {q.image if isinstance(q.image, str) else 'PIL'}]"


class ReT2Retriever(BaseRetriever):
    """Multimodal retriever: ReT-2 embeddings of (question, image) searched in the store.

    Build it from a pipeline config (``ReT2Retriever.from_config("configs/cpu.yaml", k=5)``)
    or from an existing :class:`~rag.pipeline.Pipeline`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Pipeline
    k: int = 5
    filter: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> "ReT2Retriever":
        """A retriever over the encoder and store of a pipeline config (no generator is loaded)."""
        return cls(pipeline=Pipeline.from_config(config, load_generator=False), **kwargs)

    def _get_relevant_documents(
        self, query: Any, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        q = Query.coerce(query)
        passages = self.pipeline.retrieve(q.question, q.image, k=kwargs.get("k", self.k),
                                          filter=kwargs.get("filter", self.filter))
        return [passage_to_document(p) for p in passages]

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Retrieve for many queries with one batched encoder pass and one batched search."""
        if not inputs:
            return []
        configs = config if isinstance(config, list) else [config] * len(inputs)
        managers = []
        for query, cfg in zip(inputs, configs):
            cfg = ensure_config(cfg)
            manager = CallbackManager.configure(cfg.get("callbacks"), None, inheritable_tags=cfg.get("tags"),
                                                local_tags=self.tags, inheritable_metadata=cfg.get("metadata"),
                                                local_metadata=self.metadata)
            managers.append(manager.on_retriever_start(None, _query_text(query),
                                                       name=cfg.get("run_name") or self.get_name()))
        try:
            rows = self.pipeline.retrieve_batch(inputs, k=kwargs.get("k", self.k),
                                                filter=kwargs.get("filter", self.filter))
        except Exception as exc:
            for run in managers:
                run.on_retriever_error(exc)
            if return_exceptions:
                return [exc] * len(inputs)
            raise
        results = [[passage_to_document(p) for p in row] for row in rows]
        for run, docs in zip(managers, results):
            run.on_retriever_end(docs)
        return results


class _Generate(Runnable):
    """Runnable wrapper around :meth:`generator.MultimodalGenerator.generate` (batched in ``batch``)."""

    def __init__(self, generator: Any):
        self.generator = generator

    @staticmethod
    def _request(item: Mapping[str, Any]):
        from generator import GenerationRequest

        docs = item.get("sources") or []
        return GenerationRequest(question=item["question"], image=item.get("image"),
                                 passages=[Passage.coerce(d) for d in docs])

    @staticmethod
    def _output(item: Mapping[str, Any], result: Any) -> dict[str, Any]:
        return {"question": item["question"], "answer": result.answer, "sources": list(item.get("sources") or [])}

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return self._output(input, self.generator.generate([self._request(input)])[0])

    def batch(self, inputs: list[Mapping[str, Any]], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[dict]:
        results = self.generator.generate([self._request(i) for i in inputs])
        return [self._output(i, r) for i, r in zip(inputs, results)]


def build_answer_chain(retriever: BaseRetriever, generator: Any) -> Runnable:
    """LCEL chain: ``{"question", "image"}`` → ``{"question", "answer", "sources": [Document]}``.

    ``retriever`` may be any LangChain retriever (ours takes the image into account; a
    text retriever just sees the question); ``generator`` is a
    :class:`generator.MultimodalGenerator`.
    """

    def as_query(x: Any) -> dict[str, Any]:
        q = Query.coerce(x)
        return {"question": q.question, "image": q.image}

    question = RunnableLambda(lambda x: x["question"])
    # Our retriever uses the image too; any other LangChain retriever gets the question text.
    sources = retriever if isinstance(retriever, ReT2Retriever) else question | retriever
    gather = RunnableParallel(question=question, image=RunnableLambda(lambda x: x.get("image")), sources=sources)
    return RunnableLambda(as_query) | gather | _Generate(generator)


class ReT2Embeddings(Embeddings):
    """Text-only ``Embeddings`` from a ReT-2 encoder (queries get the query instruction)."""

    def __init__(self, encoder: Any, instruction: str | None = None, batch_size: int = 64):
        self.encoder = encoder
        self.instruction = instruction
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> "ReT2Embeddings":
        """The encoder of a pipeline config (with none configured: the one its collection was built with)."""
        from rag.components import build_encoder, open_collection
        from rag.config import load_pipeline_config

        cfg = load_pipeline_config(config)
        if cfg.encoder.given:
            encoder = build_encoder(cfg.encoder)
        else:
            store, encoder = open_collection(cfg)
            store.close()
        return cls(encoder, instruction=cfg.retrieval.instruction, **kwargs)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.encoder.encode_documents(list(texts), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text], instruction=self.instruction)[0].tolist()
