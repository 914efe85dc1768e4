"""ReT-2: a recurrent multimodal retriever over a CLIP / SigLIP backbone.

One shared encoder embeds queries and documents that may be text, image, or both
into a single L2-normalised vector each (see ``shared/docs/retriever.md``).

Typical use::

    from retriever import ReT2Encoder
    encoder = ReT2Encoder.from_pretrained("path/or/hub-id")
    vectors = encoder.encode([{"text": "a cat", "image": "cat.jpg"}])
"""

from .backbones import SUPPORTED_BACKBONES, BackboneSpec, backbone_spec
from .configuration_ret2 import DEFAULT_QUERY_INSTRUCTION, ReT2Config
from .encoder import ReT2Encoder
from .modeling_ret2 import ReT2Cell, ReT2Model, ReT2Output
from .processing_ret2 import ItemError, ReT2Processor, RetrievalItem, load_image
from .tiny import build_tiny_encoder, build_tiny_model, build_tiny_processor

__all__ = [
    "SUPPORTED_BACKBONES",
    "BackboneSpec",
    "backbone_spec",
    "DEFAULT_QUERY_INSTRUCTION",
    "ReT2Config",
    "ReT2Encoder",
    "ReT2Cell",
    "ReT2Model",
    "ReT2Output",
    "ItemError",
    "ReT2Processor",
    "RetrievalItem",
    "load_image",
    "build_tiny_encoder",
    "build_tiny_model",
    "build_tiny_processor",
]
