"""The answering chain: retrieval that keeps the image, generation that streams and shows up in traces.

:func:`build_answer_chain` composes two steps, each batched as a whole:

* :class:`RetrieveSources` parses the question and image (any query shape,
  :mod:`rag.langchain.queries`) and retrieves with *one* ``retriever.batch`` call for the
  whole batch. A multimodal retriever gets the image however it is wrapped
  (``with_config``, ``bind``, ``configurable_fields``, fallbacks): the step looks through
  the wrappers to what they run; any other retriever gets the question text.
* :class:`GenerateAnswer` answers with :class:`generator.MultimodalGenerator` in one
  batched ``generate`` call, and records each answer as an LLM run (prompt, answer,
  prompt/completion token counts) for callbacks and tracers. ``stream`` / ``astream``
  yield the question and sources first, then the answer's text as it is generated.

Why not a ``{"sources": retriever, ...}`` dict step: LangChain runs a dict
(``RunnableParallel``) item by item in a batch, so the retriever would embed one query
per call. :class:`RetrieveSources` is the batched equivalent for users' own chains too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import CallbackManager
from langchain_core.outputs import Generation, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config, get_config_list
from langchain_core.runnables.config import run_in_executor
from langchain_core.runnables.utils import AddableDict

from ret2vqa.passage import Passage

from ..pipeline import Query
from .queries import parse_query
from .retriever import MultimodalQuery, ReT2Retriever

__all__ = ["GenerateAnswer", "RetrieveSources", "accepts_images", "build_answer_chain", "unwrap_runnable"]


def unwrap_runnable(runnable: Any) -> Any:
    """What a wrapped runnable runs: through ``with_config``/``bind`` (``.bound``), ``configurable_fields`` /
    ``configurable_alternatives`` (``.default``) and ``with_fallbacks`` (``.runnable``)."""
    for _ in range(32):
        inner = next((getattr(runnable, name) for name in ("bound", "default", "runnable")
                      if isinstance(getattr(runnable, name, None), Runnable)), None)
        if inner is None:
            return runnable
        runnable = inner
    return runnable


def accepts_images(retriever: Any) -> bool:
    """Whether ``retriever`` (wrapped or not) takes ``{"question", "image"}`` queries."""
    return isinstance(unwrap_runnable(retriever), ReT2Retriever)


def _split_errors(items: list[Any], parse: Any, return_exceptions: bool) -> tuple[list[Any], list[tuple[int, Any]]]:
    """``parse`` each item: the results (an exception where it failed) and the ``(index, parsed)`` that worked."""
    results: list[Any] = [None] * len(items)
    ok: list[tuple[int, Any]] = []
    for i, item in enumerate(items):
        try:
            ok.append((i, parse(item)))
        except Exception as exc:
            if not return_exceptions:
                raise
            results[i] = exc
    return results, ok


class RetrieveSources(Runnable[Any, dict]):
    """``query -> {"question", "image", key: [Document]}``, retrieving for a whole batch in one retriever call."""

    def __init__(self, retriever: Runnable, key: str = "sources"):
        self.retriever = retriever
        self.key = key
        self.multimodal = accepts_images(retriever)
        self.name = "RetrieveSources"

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        """The question + image object for a multimodal retriever (so ``chain.as_tool()`` takes an image)."""
        return MultimodalQuery if self.multimodal else super().get_input_schema(config)

    def _query(self, query: Query) -> Any:
        return {"question": query.question, "image": query.image} if self.multimodal else query.question

    def _outputs(self, results: list[Any], ok: list[tuple[int, Query]], docs: list[Any]) -> list[Any]:
        for (i, query), found in zip(ok, docs):
            results[i] = found if isinstance(found, Exception) else {
                "question": query.question, "image": query.image, self.key: found}
        return results

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        configs = get_config_list(config, len(inputs))
        results, ok = _split_errors(list(inputs), parse_query, return_exceptions)
        if not ok:
            return results
        docs = self.retriever.batch([self._query(q) for _, q in ok], [configs[i] for i, _ in ok],
                                    return_exceptions=return_exceptions, **kwargs)
        return self._outputs(results, ok, docs)

    async def abatch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
                     **kwargs: Any) -> list[Any]:
        configs = get_config_list(config, len(inputs))
        results, ok = _split_errors(list(inputs), parse_query, return_exceptions)
        if not ok:
            return results
        docs = await self.retriever.abatch([self._query(q) for _, q in ok], [configs[i] for i, _ in ok],
                                           return_exceptions=return_exceptions, **kwargs)
        return self._outputs(results, ok, docs)


class GenerateAnswer(Runnable[Mapping[str, Any], dict]):
    """``{"question", "image", "sources"} -> {"question", "answer", "sources"}`` with a multimodal generator.

    Each answer is an LLM run for callbacks (``on_llm_start`` with the rendered prompt,
    ``on_llm_new_token`` while streaming, ``on_llm_end`` with the text and
    ``llm_output["token_usage"]``). ``invoke``/``batch`` return the post-processed short
    answer; ``stream`` yields the text as decoded (post-process the joined text with
    :func:`generator.postprocess.postprocess_answer` for the same short answer).
    """

    def __init__(self, generator: Any, name: str = "ReT2Generator"):
        self.generator = generator
        self.name = name

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _request(item: Mapping[str, Any]) -> Any:
        from generator import GenerationRequest

        if not isinstance(item, Mapping) or not isinstance(item.get("question"), str):
            raise TypeError(f"the generation step takes {{'question', 'image', 'sources'}}, got {type(item).__name__}")
        docs = item.get("sources") or []
        return GenerationRequest(question=item["question"], image=item.get("image"),
                                 passages=[Passage.coerce(d) for d in docs])

    def _prepare(self, item: Mapping[str, Any]) -> tuple[Any, Any]:
        request = self._request(item)
        return request, self.generator.build_prompt(request.question, request.image, request.passages)

    def _start(self, config: RunnableConfig, prompt: Any) -> Any:
        model = getattr(getattr(self.generator, "config", None), "model", None)
        manager = CallbackManager.configure(config.get("callbacks"), None, inheritable_tags=config.get("tags"),
                                            inheritable_metadata=config.get("metadata"),
                                            local_metadata={"ls_model_name": model, "ls_provider": "transformers"})
        serialized = {"name": self.name, "id": ["ret2vqa", "generator", type(self.generator).__name__]}
        return manager.on_llm_start(serialized, [prompt.text], name=config.get("run_name") or self.name,
                                    run_id=config.get("run_id"),
                                    invocation_params={"model": model, "_type": "ret2vqa-generator"})[0]

    @staticmethod
    def _llm_result(text: str, answer: str, prompt_tokens: int, completion_tokens: int) -> LLMResult:
        usage = {"prompt_tokens": int(prompt_tokens), "completion_tokens": int(completion_tokens),
                 "total_tokens": int(prompt_tokens) + int(completion_tokens)}
        return LLMResult(generations=[[Generation(text=text, generation_info={"answer": answer})]],
                         llm_output={"token_usage": usage})

    @staticmethod
    def _output(item: Mapping[str, Any], answer: str) -> dict[str, Any]:
        return {"question": item["question"], "answer": answer, "sources": list(item.get("sources") or [])}

    # ------------------------------------------------------------------ Runnable interface
    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(self, inputs: list[Mapping[str, Any]], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        """Answer every input with one batched ``generate`` call (an item that fails is that item's error)."""
        configs = [ensure_config(c) for c in get_config_list(config, len(inputs))]
        results, ok = _split_errors(list(inputs), self._prepare, return_exceptions)
        runs = [self._start(configs[i], built) for i, (_, built) in ok]
        answers: list[Any]
        try:
            answers = self.generator.generate([request for _, (request, _) in ok], prompts=[built for _, (_, built) in ok])
        except Exception as exc:
            if not return_exceptions or len(ok) == 1:
                for run in runs:
                    run.on_llm_error(exc)
                raise
            answers = []
            for _, (request, built) in ok:
                try:
                    answers.append(self.generator.generate([request], prompts=[built])[0])
                except Exception as item_exc:
                    answers.append(item_exc)
        for (i, _), run, result in zip(ok, runs, answers):
            if isinstance(result, Exception):
                run.on_llm_error(result)
                results[i] = result
                continue
            run.on_llm_end(self._llm_result(result.raw_text, result.answer, result.prompt_tokens,
                                            getattr(result, "completion_tokens", 0)))
            results[i] = self._output(inputs[i], result.answer)
        return results

    async def abatch(self, inputs: list[Mapping[str, Any]], config: Any = None, *, return_exceptions: bool = False,
                     **kwargs: Any) -> list[Any]:
        first = get_config_list(config, max(1, len(inputs)))[0]
        return await run_in_executor(first, self.batch, inputs, config, return_exceptions=return_exceptions, **kwargs)

    def stream(self, input: Mapping[str, Any], config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[dict]:
        """``{"question", "sources"}`` first, then ``{"answer": piece}`` for each piece of text as it is generated."""
        from generator.postprocess import postprocess_answer

        config = ensure_config(config)
        request, built = self._prepare(input)
        run = self._start(config, built)
        try:
            yield AddableDict(question=input["question"], sources=list(input.get("sources") or []))
            pieces = self.generator.stream(request, prompt=built)
            for piece in pieces:
                run.on_llm_new_token(piece)
                yield AddableDict(answer=piece)
        except BaseException as exc:  # GeneratorExit too: a run that started always ends
            run.on_llm_error(exc)
            raise
        run.on_llm_end(self._llm_result(pieces.text, postprocess_answer(pieces.text), pieces.prompt_tokens,
                                        pieces.completion_tokens))

    async def astream(self, input: Mapping[str, Any], config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[dict]:
        """:meth:`stream` for async code: each piece is produced in a worker thread."""
        iterator = iter(self.stream(input, config, **kwargs))
        done = object()
        while True:
            chunk = await run_in_executor(config, next, iterator, done)
            if chunk is done:
                return
            yield chunk


def build_answer_chain(retriever: Runnable, generator: Any) -> Runnable:
    """LCEL chain: a query (``{"question", "image"}``, a string, a message...) → ``{"question", "answer", "sources"}``.

    ``retriever``: any LangChain retriever; a multimodal one (ours, however wrapped) gets the
    image, any other the question text. ``generator``: a :class:`generator.MultimodalGenerator`.
    ``batch`` retrieves for all inputs in one retriever call and generates in one batched
    call; ``stream`` yields the answer's text as it is generated.
    """
    return (RetrieveSources(retriever) | GenerateAnswer(generator)).with_config(run_name="ReT2AnswerChain")
