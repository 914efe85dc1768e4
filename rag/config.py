"""The one configuration root: a YAML for indexing, retrieval, answering and evaluation.

Sections (each a dataclass that checks its values when built; unknown or mistyped keys
fail with the file and the dotted field name)::

    encoder:    retriever.EncoderConfig        which encoder embeds queries and passages
    store:      rag.store.StoreConfig          where the collection lives (embedded or a server)
    ingest:     rag.ingest.IngestConfig        how a KB file becomes passages (index build, demo)
    generator:  generator.GeneratorConfig      the multimodal LLM that answers (null: retrieval only)
    retrieval:  RetrievalConfig                k, query instruction, payload filter
    serve:      rag.serve.ServeConfig          ``ret2vqa serve``: address, upload limits, API key, batching

Every pipeline command (``index build``/``info``, ``search``, ``ask``, ``eval``,
``demo``, ``doctor``) reads this one file through :func:`load_pipeline_config`, so the
encoder that fills a collection is the one that queries it, and a typo is an error
everywhere. Sections left out take their defaults; an empty ``encoder`` means "the
encoder the collection was built with". Command-line flags are applied with
:meth:`PipelineConfig.override`, through the same checks. Components are built from
it by the composition root, :mod:`rag.components`. See ``configs/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from generator.config import GeneratorConfig
from rag.ingest.config import IngestConfig
from rag.serve.config import ServeConfig
from rag.store.config import StoreConfig
from ret2vqa.config import ConfigError, at_least, from_dict, load_yaml, override, to_dict
from ret2vqa.errors import locate
from retriever.loading import EncoderConfig

SECTIONS = ("encoder", "store", "ingest", "generator", "retrieval", "serve")


@dataclass
class RetrievalConfig:
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
        at_least(self, 0, "k")
        if self.filter is not None:
            from rag.store.base import parse_filter

            try:
                parse_filter(self.filter)
            except ConfigError as exc:
                raise ConfigError(exc.message, "filter") from None


@dataclass
class PipelineConfig:
    """All sections of a pipeline YAML. ``generator`` is ``None`` for retrieval-only use."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    generator: GeneratorConfig | None = field(default_factory=GeneratorConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    source: str | None = None  # the file it was read from, for messages

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> "PipelineConfig":
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown section (known: {', '.join(SECTIONS)})", locate(where, str(unknown[0])))
        sections: dict[str, Any] = {}
        for name, section_cls in (("encoder", EncoderConfig), ("store", StoreConfig), ("ingest", IngestConfig),
                                  ("generator", GeneratorConfig), ("retrieval", RetrievalConfig),
                                  ("serve", ServeConfig)):
            if name == "generator" and name in data and data[name] is None:
                sections[name] = None
                continue
            value = data.get(name) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"expected a mapping, got {value!r}", locate(where, name))
            sections[name] = from_dict(section_cls, value, where=locate(where, name))
        return cls(**sections, source=where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PipelineConfig":
        return cls.from_dict(load_yaml(path), where=str(path))

    def override(self, changes: Mapping[str, Any], where: str = "command line") -> "PipelineConfig":
        """A copy with ``changes`` (``{"store.path": ..., "encoder.device": ...}``; ``None`` = unchanged)
        applied and checked; errors name ``where`` and the field."""
        return override(self, changes, where)

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("source", None)
        if isinstance(data.get("store"), dict):
            data["store"].pop("api_key", None)
        if isinstance(data.get("serve"), dict):
            data["serve"].pop("api_key", None)
        return data


def load_pipeline_config(config: "str | Path | PipelineConfig | Mapping[str, Any] | None") -> PipelineConfig:
    """A :class:`PipelineConfig` from a path, a mapping, an instance, or ``None`` (the CPU preset)."""
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
