"""The ``ingest:`` section of a pipeline config: how a knowledge-base file becomes passages.

Read with :func:`ret2vqa.config.from_dict` (unknown or mistyped keys fail naming the
field) as part of :class:`rag.config.PipelineConfig`; the values are checked on
construction. See ``configs/index/*.yaml`` for documented examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ret2vqa.config import ConfigError, at_least


@dataclass
class IngestConfig:
    """How a knowledge-base file becomes passages, and how they are written.

    ``batch_size`` passages are encoded, upserted and checkpointed together: after each
    batch the progress is saved, so an interrupted build loses at most one batch of
    work. ``chunk_tokens`` is the passage budget, in whitespace-separated words, used to
    split InfoSeek articles (and E-VQA sections when ``chunk_sections``); sentences are
    packed greedily and a sentence longer than the budget is cut.
    """

    batch_size: int = 512
    chunk_tokens: int = 100
    min_chars: int = 5
    # E-VQA: sections whose title contains one of these (case-insensitive) are skipped.
    skip_sections: list[str] = field(default_factory=lambda: ["reference", "external link"])
    chunk_sections: bool = False
    title_prefix: bool = True
    # Passage images: a directory of local image files. E-VQA/InfoSeek name images by URL
    # or entity, so ``image_template`` says which file to open (fields: {filename},
    # {wikidata_id}, {wikidata_prefix}); M2KR/jsonl image paths are relative to it.
    image_root: Optional[str] = None
    image_template: Optional[str] = None
    # Store the passage text in the payload (needed to generate answers from hits).
    store_text: bool = True
    strict: bool = False
    # Build the HNSW index at the end of the run (Qdrant Edge); otherwise on first need.
    optimize: bool = True
    # Count records first so the progress bar can show an ETA.
    count_records: bool = True
    max_error_examples: int = 20
    on_missing_image: Literal["text_only", "error"] = "text_only"
    # A record's text (an article, a section, a passage) longer than this many characters is cut
    # to it before chunking, with a warning naming the file and line: one runaway line (a dump
    # gone wrong, a base64 blob) must not cost minutes and gigabytes. 1,000,000 characters is
    # about 150,000 words, longer than any Wikipedia article.
    max_text_chars: int = 1_000_000

    def __post_init__(self) -> None:
        at_least(self, 1, "batch_size")
        if self.chunk_tokens < 8:
            raise ConfigError(f"must be >= 8 words, got {self.chunk_tokens}", "chunk_tokens")
        at_least(self, 0, "min_chars", "max_error_examples")
        at_least(self, 1000, "max_text_chars")

    def passage_options(self) -> dict[str, Any]:
        """The settings that change which passages a KB yields (part of the resume key)."""
        return {
            "chunk_tokens": self.chunk_tokens,
            "min_chars": self.min_chars,
            "skip_sections": list(self.skip_sections),
            "chunk_sections": self.chunk_sections,
            "title_prefix": self.title_prefix,
            "image_root": self.image_root,
            "image_template": self.image_template,
            "store_text": self.store_text,
            "max_text_chars": self.max_text_chars,
        }
