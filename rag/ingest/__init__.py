"""Knowledge-base ingestion: KB files -> passages -> encoder vectors -> a Qdrant collection.

>>> from rag.config import PipelineConfig
>>> from rag.ingest import build_index
>>> report = build_index(PipelineConfig.from_yaml("configs/index/evqa-2m.yaml"), "encyclopedic_kb_wiki.json", "evqa")  # doctest: +SKIP
>>> print(report.summary())                                                                                               # doctest: +SKIP

Readers (:mod:`rag.ingest.readers`) stream passages from the E-VQA KB json, InfoSeek
Wiki6M/Wiki100K jsonl, M2KR passages (ReT's jsonl or the dataset's parquet), M-BEIR
candidate pools and generic jsonl; :func:`build_index`
encodes them in batches, upserts them and checkpoints after every batch so that an
interrupted build (kill -9 included) resumes without losing or duplicating passages.
"""

from .config import IngestConfig
from .indexer import STATE_NAME, IndexReport, build_index
from .passages import chunk_words, split_sentences
from .readers import (
    READERS,
    EVQAReader,
    InfoSeekReader,
    JsonlReader,
    KBReader,
    M2KRReader,
    MBEIRReader,
    Position,
    make_reader,
)

__all__ = [
    "IngestConfig",
    "STATE_NAME",
    "IndexReport",
    "build_index",
    "chunk_words",
    "split_sentences",
    "READERS",
    "EVQAReader",
    "InfoSeekReader",
    "JsonlReader",
    "KBReader",
    "M2KRReader",
    "MBEIRReader",
    "Position",
    "make_reader",
]
