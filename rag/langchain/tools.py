"""A retriever tool for agents that can take an image with the query.

``langchain_core.tools.create_retriever_tool`` fixes the tool's arguments to
``{"query": str}``, so an agent cannot hand a multimodal retriever an image through it.
:func:`create_retriever_tool` here has the same signature and output, and for a retriever
that takes images (ours, however wrapped) adds an optional ``image`` argument (a local path,
an http(s) URL or a data URI). ``retriever.as_tool()`` works as well: its arguments come
from the retriever's input schema (``question``, ``image``).
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.prompts import BasePromptTemplate, PromptTemplate, aformat_document, format_document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool
from langchain_core.tools.retriever import RetrieverInput
from pydantic import BaseModel, Field

from .chain import accepts_images

__all__ = ["MultimodalRetrieverInput", "create_retriever_tool"]


class MultimodalRetrieverInput(BaseModel):
    """Input to a multimodal retriever tool."""

    query: str = Field(description="query to look up in the retriever")
    image: str | None = Field(None, description="optional image the query is about: a local file path, an http(s) "
                                                "URL or a data: URI")


def create_retriever_tool(
    retriever: BaseRetriever,
    name: str,
    description: str,
    *,
    document_prompt: BasePromptTemplate[str] | None = None,
    document_separator: str = "\n\n",
    response_format: Literal["content", "content_and_artifact"] = "content",
) -> StructuredTool:
    """``langchain_core.tools.create_retriever_tool``, with an ``image`` argument for a multimodal retriever."""
    prompt = document_prompt or PromptTemplate.from_template("{page_content}")
    multimodal = accepts_images(retriever)

    def query_of(query: str, image: str | None) -> Any:
        return {"question": query, "image": image} if multimodal and image else query

    def output(docs: list[Document], content: str) -> Any:
        return (content, docs) if response_format == "content_and_artifact" else content

    def func(query: str, image: str | None = None, callbacks: Callbacks = None) -> Any:
        docs = retriever.invoke(query_of(query, image), config={"callbacks": callbacks})
        return output(docs, document_separator.join(format_document(d, prompt) for d in docs))

    async def afunc(query: str, image: str | None = None, callbacks: Callbacks = None) -> Any:
        docs = await retriever.ainvoke(query_of(query, image), config={"callbacks": callbacks})
        return output(docs, document_separator.join([await aformat_document(d, prompt) for d in docs]))

    return StructuredTool(
        name=name, description=description, func=func, coroutine=afunc,
        args_schema=MultimodalRetrieverInput if multimodal else RetrieverInput, response_format=response_format,
    )
