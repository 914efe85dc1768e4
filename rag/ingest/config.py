"""Configuration of knowledge-base indexing: the encoder, the store and the ingestion itself.

An index-build YAML has three sections, each a dataclass read with
:func:`ret2vqa.config.from_dict` (unknown or mistyped keys fail naming the field)::

    encoder:   # EncoderSettings: which ReT-2 checkpoint embeds the passages
    store:     # rag.store.StoreConfig: where the collection lives, HNSW, quantization
    ingest:    # IngestConfig: passage building, batch size, images, strictness

Other top-level sections (e.g. ``generator:`` of a shared pipeline config) are left to
the commands that own them, so one YAML can serve several commands. See
``configs/index/*.yaml`` for documented examples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from ret2vqa.config import ConfigError, from_dict, load_yaml, to_dict
from rag.store.config import StoreConfig

logger = logging.getLogger(__name__)

TINY = "tiny"
KNOWN_SECTIONS = ("encoder", "store", "ingest")


@dataclass
class EncoderSettings:
    """The encoder that embeds passages (and, later, queries against them).

    ``type``: ``ret2`` (a ReT-2 checkpoint) or ``dual_encoder`` (a plain CLIP / SigLIP
    checkpoint used zero-shot, the classic baseline, e.g. ``openai/clip-vit-base-patch32``).
    ``name_or_path``: a hub id or a local checkpoint directory; ``tiny`` (or
    ``tiny: true``) builds the tiny randomly initialised encoder used by tests and the
    offline demo (deterministic for ``tiny_backbone`` and ``tiny_seed``; its vectors
    mean nothing). ``batch_size`` is the forward-pass batch; ``device``/``dtype``
    default to the first GPU in bfloat16 when there is one, else CPU float32.
    """

    name_or_path: str = ""
    type: Literal["ret2", "dual_encoder"] = "ret2"
    revision: Optional[str] = None
    batch_size: int = 64
    device: Optional[str] = None
    dtype: Optional[str] = None
    tiny: bool = False
    tiny_backbone: str = "clip"
    tiny_seed: int = 0
    image_workers: int = 4

    @property
    def is_tiny(self) -> bool:
        return self.tiny or self.name_or_path == TINY

    def validate(self, where: str = "encoder") -> "EncoderSettings":
        if not self.is_tiny and not self.name_or_path:
            raise ConfigError(
                f"{where}.name_or_path: required (a ReT-2 checkpoint hub id or local directory; "
                f"`tiny` builds the random test encoder)"
            )
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be >= 1, got {self.batch_size}")
        return self


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

    def validate(self, where: str = "ingest") -> "IngestConfig":
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be >= 1, got {self.batch_size}")
        if self.chunk_tokens < 8:
            raise ConfigError(f"{where}.chunk_tokens: must be >= 8 words, got {self.chunk_tokens}")
        if self.min_chars < 0:
            raise ConfigError(f"{where}.min_chars: must be >= 0, got {self.min_chars}")
        return self

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
        }


@dataclass
class IndexConfig:
    """The three sections of an index-build config."""

    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)

    def validate(self) -> "IndexConfig":
        self.encoder.validate()
        self.store.validate()
        self.ingest.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data["store"].pop("api_key", None)
        return data


def index_config_from_dict(data: Mapping[str, Any], where: str = "config") -> IndexConfig:
    """Build an :class:`IndexConfig` from the ``encoder``/``store``/``ingest`` sections of ``data``."""
    others = sorted(set(data) - set(KNOWN_SECTIONS))
    if others:
        logger.info("%s: sections %s are not used by indexing", where, others)
    sections = {}
    for name, cls in (("encoder", EncoderSettings), ("store", StoreConfig), ("ingest", IngestConfig)):
        value = data.get(name) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {name}: expected a mapping, got {value!r}")
        sections[name] = from_dict(cls, value, where=f"{where}: {name}")
    return IndexConfig(**sections)


def load_index_config(path: str | Path | None) -> IndexConfig:
    """Read an index config YAML (``None``: all defaults, the encoder must then come from flags)."""
    if path is None:
        return IndexConfig()
    return index_config_from_dict(load_yaml(path), where=str(path))
