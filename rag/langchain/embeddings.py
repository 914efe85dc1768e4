"""``ReT2Embeddings``: the ReT-2 encoder as LangChain ``Embeddings`` (text, images, or both).

Texts are embedded as documents, queries with the query instruction (as the pipeline
does), and ``embed_image`` embeds image files, URLs or data URIs as image-only documents
(the name and signature of LangChain's multimodal embeddings, e.g. ``OpenCLIPEmbeddings``).
The vectors live in the same space, so a text query finds image documents and back.
"""

from __future__ import annotations

from typing import Any, Sequence

from langchain_core.embeddings import Embeddings

from ret2vqa.errors import ConfigError

__all__ = ["ReT2Embeddings"]


class ReT2Embeddings(Embeddings):
    """``Embeddings`` from a ReT-2 encoder (queries get the query instruction; ``instruction=""``: none).

    ``ReT2Embeddings.from_config("configs/cpu.yaml")`` (or ``ReT2Embeddings(config=...)``)
    builds the encoder of a pipeline config; ``ReT2Embeddings(encoder)`` wraps a loaded one.
    """

    def __init__(self, encoder: Any = None, instruction: str | None = None, batch_size: int = 64, *,
                 config: Any = None):
        if encoder is None:
            if config is None:
                raise ConfigError("give an encoder, or a pipeline config to build it from (config=...)", "encoder")
            encoder, configured = _encoder_of(config)
            instruction = configured if instruction is None else instruction
        if batch_size < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", "batch_size")
        if getattr(encoder, "multivector", False):
            # LangChain's Embeddings contract is one list[float] per text; a late-interaction encoder
            # gives a set of token vectors scored by MaxSim, which no caller of that contract can rank.
            raise ConfigError(
                "this encoder is late-interaction (a set of token vectors per item, scored by MaxSim), and "
                "LangChain's Embeddings interface holds one vector per text: use ReT2Retriever or ReT2VectorStore, "
                "which search its multivector collection, or a single-vector encoder", "encoder")
        self.encoder = encoder
        self.instruction = instruction
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, config: Any = None, **kwargs: Any) -> "ReT2Embeddings":
        """The encoder of a pipeline config (with none configured: the one its collection was built with)."""
        return cls(config=config if config is not None else _DEFAULT, **kwargs)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.encoder.encode_documents(list(texts), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text], instruction=self.instruction)[0].tolist()

    def embed_image(self, uris: Sequence[Any]) -> list[list[float]]:
        """Image-only document vectors of ``uris`` (local paths, http(s) URLs, data URIs or PIL images)."""
        uris = list(uris)
        return self.encoder.encode_documents([None] * len(uris), images=uris, batch_size=self.batch_size).tolist()

    def embed_multimodal_query(self, question: str, image: Any = None) -> list[float]:
        """A query vector of a question about an image (with the query instruction)."""
        return self.encoder.encode_queries([question], images=[image], instruction=self.instruction)[0].tolist()


_DEFAULT = object()


def _encoder_of(config: Any) -> tuple[Any, str | None]:
    """The encoder of a pipeline config, and the config's query instruction."""
    from rag.components import open_collection, shared_encoder
    from rag.config import load_pipeline_config

    cfg = load_pipeline_config(None if config is _DEFAULT else config)
    if cfg.encoder.given:
        return shared_encoder(cfg.encoder), cfg.retrieval.instruction
    store, encoder = open_collection(cfg, shared=True)  # the collection says which encoder built it
    store.close()
    return encoder, cfg.retrieval.instruction
