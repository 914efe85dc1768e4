"""The pipeline configuration: one YAML for indexing, retrieval and answering.

Sections (each a dataclass; unknown or mistyped keys fail with the field's name)::

    encoder:    rag.ingest.config.EncoderSettings   which ReT-2 checkpoint embeds queries and passages
    store:      rag.store.StoreConfig                where the collection lives (embedded or a server)
    ingest:     rag.ingest.config.IngestConfig       how a KB file becomes passages (index build, demo)
    generator:  generator.GeneratorConfig            the multimodal LLM that answers (null: retrieval only)
    retrieval:  RetrievalSettings                    k, query instruction, payload filter

``ret2vqa index build``, ``search``, ``ask``, ``eval`` and ``demo`` all read this one
file, so the encoder that fills a collection is the one that queries it. See
``configs/cpu.yaml`` and ``configs/gpu.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from generator.config import GeneratorConfig
from rag.ingest.config import EncoderSettings, IngestConfig
from rag.store.config import StoreConfig
from ret2vqa.config import ConfigError, from_dict, load_yaml, to_dict

SECTIONS = ("encoder", "store", "ingest", "generator", "retrieval")


@dataclass
class RetrievalSettings:
    """How queries are built and how many passages reach the generator.

    ``k``: passages retrieved per question (0 = answer zero-shot, no retrieval).
    ``instruction``: the query instruction (``None``: the encoder's trained default,
    ``""``: none). ``use_image``: embed the question image with the question (the
    point of a multimodal retriever; ``false`` gives a text-only retrieval baseline).
    ``filter``: a payload filter applied to every search, e.g. ``{"topic": "coffee"}``.
    """

    k: int = 5
    instruction: str | None = None
    use_image: bool = True
    filter: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ConfigError(f"retrieval.k: must be >= 0, got {self.k}")


@dataclass
class PipelineConfig:
    """All sections of a pipeline YAML. ``generator`` is ``None`` for retrieval-only use."""

    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    generator: GeneratorConfig | None = field(default_factory=GeneratorConfig)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    source: str | None = None  # the file it was read from, for messages

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> "PipelineConfig":
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{where}: unknown section '{unknown[0]}' (known: {', '.join(SECTIONS)})")
        sections: dict[str, Any] = {}
        for name, section_cls in (("encoder", EncoderSettings), ("store", StoreConfig), ("ingest", IngestConfig),
                                  ("retrieval", RetrievalSettings)):
            value = data.get(name) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {name}: expected a mapping, got {value!r}")
            sections[name] = from_dict(section_cls, value, where=f"{where}: {name}")
        if "generator" in data and data["generator"] is None:
            sections["generator"] = None
        else:
            value = data.get("generator") or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: generator: expected a mapping or null, got {value!r}")
            sections["generator"] = from_dict(GeneratorConfig, value, where=f"{where}: generator")
        return cls(**sections, source=where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PipelineConfig":
        return cls.from_dict(load_yaml(path), where=str(path))

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("source", None)
        if isinstance(data.get("store"), dict):
            data["store"].pop("api_key", None)
        return data


def load_pipeline_config(config: "str | Path | PipelineConfig | Mapping[str, Any] | None") -> PipelineConfig:
    """A :class:`PipelineConfig` from a path, a mapping, an instance, or ``None`` (the CPU defaults)."""
    if isinstance(config, PipelineConfig):
        return config
    if config is None:
        return PipelineConfig.from_yaml(default_config_path())
    if isinstance(config, Mapping):
        return PipelineConfig.from_dict(config)
    return PipelineConfig.from_yaml(config)


def default_config_path(name: str = "cpu") -> Path:
    """A preset shipped with the package (``rag/configs`` links to the checkout's ``configs/``)."""
    return Path(__file__).resolve().parent / "configs" / f"{name}.yaml"
