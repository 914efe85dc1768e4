"""The composition root: components are built from a :class:`~rag.config.PipelineConfig` here, and only here.

Every entry point asks this module instead of assembling parts itself: the CLI
commands (``index``, ``search``, ``ask``, ``eval``, ``demo``, ``train``),
:meth:`rag.pipeline.Pipeline.from_config`, the LangChain adapters and the benchmarks.
So there is one answer to "which encoder?", "is this collection compatible?" and
"what does ``tiny-random/...`` mean?":

* :func:`build_encoder` / :func:`build_generator`: a model from its config section;
  checkpoints load through :func:`retriever.load_encoder` and
  :meth:`generator.MultimodalGenerator.from_config`, tiny random models
  (``tiny-random/<family>``) are built in code by :mod:`rag.tiny_models`;
* :func:`open_collection`: the collection of ``config.store`` together with the
  encoder that may query it: the configured one, checked against what the collection
  records (:func:`rag.store.check_compatible`), or, when the config names none, the
  one the collection was built with;
* :func:`collection_metadata`: what a collection records about its encoder;
* :func:`shared_encoder`: one encoder for the users of a shared collection;
* :func:`build_training_encoder`: the encoder ``ret2vqa train`` starts from.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any, Mapping

from generator.config import GeneratorConfig
from ret2vqa.errors import ConfigError
from ret2vqa.hub import is_tiny_model, tiny_model
from retriever.loading import EncoderConfig, apply_run_options, load_encoder

from .config import PipelineConfig
from .store import CollectionMetadata, VectorStore, check_compatible, open_shared, open_store


def build_encoder(config: EncoderConfig, device: Any = None) -> Any:
    """The encoder named by ``config`` (``device`` overrides ``config.device``, e.g. one GPU per process)."""
    if is_tiny_model(config.name_or_path):
        from . import tiny_models

        family, seed = tiny_model(config.name_or_path, config.revision, "encoder.name_or_path")
        device = device if device is not None else (config.device or "cpu")
        if config.type == "dual_encoder":
            return tiny_models.build_tiny_dual_encoder(family, seed=seed, device=device)
        return apply_run_options(tiny_models.build_tiny_encoder(family, seed=seed, device=device), config)
    return load_encoder(config, device=device)


_SHARED_ENCODERS: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
_SHARED_ENCODERS_LOCK = threading.Lock()


def shared_encoder(config: EncoderConfig) -> Any:
    """The encoder of ``config``, reused while any user of an identical config still holds it.

    For the objects that share a collection (``open_collection(shared=True)``): ten
    LangChain retrievers over one knowledge base need one copy of the weights, not ten.
    """
    from ret2vqa.config import to_dict

    key = json.dumps(to_dict(config), sort_keys=True, default=str)
    with _SHARED_ENCODERS_LOCK:
        encoder = _SHARED_ENCODERS.get(key)
        if encoder is None:
            encoder = build_encoder(config)
            _SHARED_ENCODERS[key] = encoder
        return encoder


def build_generator(config: GeneratorConfig) -> Any:
    """The :class:`~generator.MultimodalGenerator` of ``config``."""
    if is_tiny_model(config.model):
        from . import tiny_models

        family, seed = tiny_model(config.model, config.revision, "generator.model")
        return tiny_models.build_tiny_generator(family, seed=seed, config=config)
    from generator import MultimodalGenerator

    return MultimodalGenerator.from_config(config)


def build_generation_workers(config: GeneratorConfig, count: int, torch_threads: int | None = None) -> Any:
    """:class:`~rag.serve.workers.GenerationWorkers`: ``count`` processes, each with the generator of ``config``
    (built there by :func:`build_generator`)."""
    from .serve.workers import GenerationWorkers

    return GenerationWorkers(config, count, torch_threads)


def collection_metadata(encoder: Any, config: EncoderConfig, distance: str = "cosine",
                        **extra: Any) -> CollectionMetadata:
    """What a collection filled by ``encoder`` (built from ``config``) records, and is checked against.

    ``extra`` goes to the metadata's ``config`` (e.g. ``ingest=`` passage options, for ``index info``).
    """
    return CollectionMetadata(
        encoder_name=str(encoder.name_or_path),
        encoder_revision=getattr(encoder, "revision", None),
        encoder_fingerprint=getattr(encoder, "fingerprint", None),
        dim=int(encoder.embedding_dim),
        distance=distance,
        multivector=bool(getattr(encoder, "multivector", False)),
        encoder_loader=config.loader_spec(),
        config=dict(extra),
    )


def open_collection(config: PipelineConfig, encoder: Any = None, *, create: bool = False,
                    extra_metadata: Mapping[str, Any] | None = None, shared: bool = False,
                    **store_kwargs: Any) -> tuple[VectorStore, Any]:
    """Open the collection of ``config.store`` with the encoder that may query it: ``(store, encoder)``.

    ``encoder``: one already built from ``config.encoder``. Otherwise the configured
    encoder is built; with no encoder configured (empty ``encoder.name_or_path``), the
    collection's own is (its device, dtype and batch size from ``config.encoder``).
    The collection must have been built by that encoder, else
    :class:`~rag.store.CollectionMismatchError`. ``create``: create a missing collection
    for this encoder (indexing; needs a configured encoder), recording
    ``extra_metadata``. ``shared``: a :class:`~rag.store.SharedStore` handle, so that this
    process may open the collection again (LangChain retrievers and vector stores); closing
    the handle closes the collection once no other handle is open; the encoder is shared
    too (:func:`shared_encoder`). ``store_kwargs`` go to the backend (e.g. ``client=``).
    """
    opener = open_shared if shared else open_store
    build = shared_encoder if shared else build_encoder
    if encoder is None and config.encoder.given:
        encoder = build(config.encoder)
    if encoder is None:
        if create:
            raise ConfigError("required to build a collection (the encoder that embeds the passages)",
                              "encoder.name_or_path")
        store = opener(config.store, **store_kwargs)
        try:
            spec = store.metadata.encoder_loader or {"name_or_path": store.metadata.encoder_name,
                                                     "revision": store.metadata.encoder_revision}
            encoder = build(EncoderConfig.from_loader_spec(spec, base=config.encoder))
            check_compatible(store.metadata, collection_metadata(encoder, config.encoder, config.store.distance),
                             config.store.describe())
        except BaseException:
            store.close()
            raise
        return store, encoder
    expect = collection_metadata(encoder, config.encoder, config.store.distance, **dict(extra_metadata or {}))
    return opener(config.store, expect=expect, create=create, **store_kwargs), encoder


def build_training_encoder(model: Any, seed: int = 0) -> Any:
    """The encoder ``ret2vqa train`` starts from, for a :class:`retriever.training.ModelInitConfig`.

    ``backbone: tiny-random/<family>`` builds a tiny random ReT-2 (seeded by ``revision``,
    else by the training ``seed``) with the ``cell`` overrides; anything else loads
    through :func:`retriever.training.build_encoder`.
    """
    if model.backbone and is_tiny_model(model.backbone):
        from . import tiny_models

        family, tiny_seed = tiny_model(model.backbone, model.revision, "model.backbone")
        return tiny_models.build_tiny_encoder(family, seed=tiny_seed if model.revision else seed, **model.cell)
    from retriever.training.trainer import build_encoder as build_checkpoint_encoder

    return build_checkpoint_encoder(model)
