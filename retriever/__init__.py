"""ReT-2: a recurrent multimodal retriever over a CLIP / SigLIP backbone.

One shared encoder embeds queries and documents that may be text, image, or both
into a single L2-normalised vector each, or with a late-interaction head into one
normalised vector per state token, compared by MaxSim (see ``docs/retriever.md``).
The released ReT checkpoints load directly (converted by :mod:`retriever.convert`).

Typical use::

    from retriever import ReT2Encoder
    encoder = ReT2Encoder.from_pretrained("path/or/hub-id")
    vectors = encoder.encode([{"text": "a cat", "image": "cat.jpg"}])

:class:`EncoderConfig` is the ``encoder:`` section of a pipeline config and
:func:`load_encoder` loads it (a ReT-2 checkpoint, or the zero-shot CLIP / SigLIP
baseline, :class:`retriever.baseline.DualEncoder`).
"""

from __future__ import annotations

from ret2vqa.lazy import lazy_exports

from .loading import EncoderConfig, load_encoder

# Names that need torch / transformers load on first use, so that reading a config
# (``from retriever import EncoderConfig``) and ``ret2vqa --help`` stay instant.
_LAZY = {
    "SUPPORTED_BACKBONES": "retriever.backbones",
    "BackboneSpec": "retriever.backbones",
    "backbone_spec": "retriever.backbones",
    "DEFAULT_QUERY_INSTRUCTION": "retriever.configuration_ret2",
    "ReT2Config": "retriever.configuration_ret2",
    "ReT2Encoder": "retriever.encoder",
    "maxsim_scores": "retriever.encoder",
    "ConversionError": "retriever.convert",
    "convert_checkpoint": "retriever.convert",
    "ReT2Cell": "retriever.modeling_ret2",
    "ReT2Model": "retriever.modeling_ret2",
    "ReT2Output": "retriever.modeling_ret2",
    "ItemError": "retriever.processing_ret2",
    "ReT2Processor": "retriever.processing_ret2",
    "RetrievalItem": "retriever.processing_ret2",
    "load_image": "retriever.processing_ret2",
}

__all__ = ["EncoderConfig", "load_encoder", *_LAZY]

__getattr__ = lazy_exports(__name__, _LAZY)
