"""Shared infrastructure for the ret2vqa packages.

The product lives in four packages: ``retriever`` (ReT-2 encoder), ``generator``
(multimodal LLMs), ``rag`` (store, ingestion, pipeline, LangChain, CLI) and ``eval``
(benchmarks and official metrics). This small package holds what all of them share,
so that each thing is done one way: configuration dataclasses from YAML
(:mod:`ret2vqa.config`), line-numbered reading of data files with malformed-row
reports (:mod:`ret2vqa.io`) and model resolution with a clear offline story
(:mod:`ret2vqa.hub`).
"""

__version__ = "0.1.0"
