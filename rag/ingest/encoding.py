"""Loading the ReT-2 encoder named by a config, and describing it to the store.

The collection records who built it (:class:`rag.store.CollectionMetadata`): name,
revision, weight fingerprint, dimension, and how to load the encoder again
(``encoder_loader``), so ``ret2vqa search`` can embed queries with the very encoder that
embedded the passages without being told which one it was.
"""

from __future__ import annotations

from typing import Any

from rag.store import CollectionMetadata

from .config import EncoderSettings


def load_encoder(settings: EncoderSettings, device: Any = None) -> Any:
    """The encoder of ``settings`` (``device`` overrides the config's).

    A :class:`retriever.ReT2Encoder`, or with ``type: dual_encoder`` the zero-shot
    :class:`retriever.baseline.DualEncoder`; both have the same ``encode*`` interface.
    """
    settings.validate()
    device = device if device is not None else settings.device
    if settings.type == "dual_encoder":
        from retriever.baseline import DualEncoder, build_tiny_dual_encoder

        if settings.is_tiny:
            return build_tiny_dual_encoder(settings.tiny_backbone, seed=settings.tiny_seed, device=device or "cpu")
        return DualEncoder.from_pretrained(
            settings.name_or_path, revision=settings.revision, device=device, dtype=settings.dtype,
            image_workers=settings.image_workers,
        )
    from retriever import ReT2Encoder, build_tiny_encoder

    if settings.is_tiny:
        return build_tiny_encoder(settings.tiny_backbone, seed=settings.tiny_seed, device=device or "cpu")
    return ReT2Encoder.from_pretrained(
        settings.name_or_path,
        revision=settings.revision,
        device=device,
        dtype=settings.dtype,
        image_workers=settings.image_workers,
    )


def loader_spec(settings: EncoderSettings) -> dict[str, Any]:
    """How to load this encoder again, as recorded in the collection metadata."""
    if settings.is_tiny:
        return {"type": settings.type, "tiny": True, "tiny_backbone": settings.tiny_backbone,
                "tiny_seed": settings.tiny_seed}
    return {"type": settings.type, "name_or_path": settings.name_or_path, "revision": settings.revision}


def encoder_metadata(encoder: Any, settings: EncoderSettings, distance: str = "cosine", **config: Any) -> CollectionMetadata:
    """The metadata a collection filled by ``encoder`` records (and is checked against)."""
    return CollectionMetadata(
        encoder_name=str(encoder.name_or_path),
        encoder_revision=getattr(encoder, "revision", None),
        encoder_fingerprint=getattr(encoder, "fingerprint", None),
        dim=int(encoder.embedding_dim),
        distance=distance,
        encoder_loader=loader_spec(settings),
        config=dict(config),
    )


def settings_from_metadata(metadata: CollectionMetadata, base: EncoderSettings | None = None) -> EncoderSettings:
    """Encoder settings that rebuild the encoder a collection was built with.

    ``base`` supplies run-time choices (device, dtype, batch size) that the collection
    does not dictate.
    """
    base = base or EncoderSettings()
    loader = metadata.encoder_loader or {"name_or_path": metadata.encoder_name, "revision": metadata.encoder_revision}
    fields = {
        "type": loader.get("type", "ret2"),
        "batch_size": base.batch_size,
        "device": base.device,
        "dtype": base.dtype,
        "image_workers": base.image_workers,
    }
    if loader.get("tiny"):
        return EncoderSettings(
            name_or_path="tiny",
            tiny=True,
            tiny_backbone=loader.get("tiny_backbone", "clip"),
            tiny_seed=int(loader.get("tiny_seed", 0)),
            **fields,
        )
    return EncoderSettings(name_or_path=loader["name_or_path"], revision=loader.get("revision"), **fields)
