"""User-facing encoders: items (text, image, or both) in, normalised float32 vectors out.

:class:`BaseEncoder` does what every caller would otherwise repeat: loading images
from paths (in parallel threads), clear per-item errors, batching with length
bucketing (items are sorted by size so batches pad little, then returned in the
caller's order), ``torch.inference_mode``, device and dtype, a progress bar, and a
weight fingerprint for the store. :class:`ReT2Encoder` pairs a :class:`ReT2Model`
with its :class:`ReT2Processor`; :class:`retriever.baseline.DualEncoder` is the
zero-shot CLIP/SigLIP baseline with the same interface.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ret2vqa.devices import resolve_device, resolve_dtype
from ret2vqa.images import reduce_to_side

from .configuration_ret2 import ReT2Config
from .modeling_ret2 import ReT2Model
from .processing_ret2 import ImageLike, ItemError, ReT2Processor, RetrievalItem, load_image

logger = logging.getLogger(__name__)

BadImageCallback = Callable[[int, str], None]


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file. In the Hugging Face cache a weight file links to a blob named by
    exactly that hash, so it is read from the link instead of re-hashing gigabytes."""
    if path.is_symlink():
        name = Path(os.readlink(path)).name
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            return name
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BaseEncoder:
    """Shared encoding machinery; subclasses provide ``_encode_batch`` and the model's identity."""

    def __init__(
        self,
        model: torch.nn.Module,
        name_or_path: str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        image_workers: int = 4,
    ):
        self.device = resolve_device(device, "encoder.device")
        self.dtype = resolve_dtype(dtype, self.device, "encoder.dtype")
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.name_or_path = name_or_path or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.revision = revision
        self.image_workers = max(1, int(image_workers))
        self._fingerprint: str | None = None
        self._source_dir: Path | None = None
        #: What runs a batch: the model itself, or its compiled form (:meth:`compile`).
        self._forward: Callable[..., Any] = self.model
        self.compiled: str | None = None

    #: Images are resized to about this side by the model's processor (``None``: unknown). Every
    #: image is first cut by a whole factor towards it (:func:`ret2vqa.images.reduce_to_side`), so
    #: the processor never resizes a full photo; document image files (indexing: many large photos)
    #: are also decoded no larger (see :func:`ret2vqa.images.load_image`). Query images are decoded
    #: whole before the cut, so a question's vector is the same whether its image arrives as a path
    #: (``ask``), as bytes (``serve``) or as a PIL image.
    image_decode_size: int | None = None

    # ------------------------------------------------------------------ compilation
    def compile(self, mode: str | bool = True, backend: str = "inductor") -> "BaseEncoder":
        """Run batches through ``torch.compile(model)``; returns ``self``.

        ``mode``: ``True`` / ``"default"`` (fused kernels), ``"reduce-overhead"`` (also
        CUDA graphs: the launch overhead of the cell's small kernels goes away, worth it
        at small and medium batches on a GPU), ``"max-autotune"``. The first batch of each
        new shape compiles (seconds to a minute); texts are then padded to
        ``max_text_length`` so that batches share shapes. ``False`` undoes it. The weights
        are shared with :attr:`model`, so saving and the fingerprint are unaffected.
        """
        if mode is False or mode in ("off", "none"):
            self._forward, self.compiled = self.model, None
            return self
        mode_name = "default" if mode is True else str(mode)
        self._forward = torch.compile(self.model, mode=None if mode_name == "default" else mode_name,
                                      backend=backend)
        self.compiled = mode_name
        return self

    def _to_device(self, batch: Any) -> Any:
        """Move a processed batch to the device; on CUDA without blocking (from pinned memory,
        see ``_prepare``), so the copy does not wait for the previous batch's kernels."""
        if self.device.type != "cuda":
            return batch.to(self.device)
        for key, value in list(batch.items()):
            if torch.is_tensor(value):
                batch[key] = value.to(self.device, non_blocking=True)
        return batch

    # ------------------------------------------------------------------ identity
    @property
    def embedding_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_vectors(self) -> int | None:
        """Vectors per item of a late-interaction encoder (each ``embedding_dim`` wide); ``None``: one vector."""
        return None

    @property
    def multivector(self) -> bool:
        """Whether items are embedded as several vectors compared by MaxSim (late interaction)."""
        return self.num_vectors is not None

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one item's embedding: ``(dim,)`` or ``(num_vectors, dim)``."""
        return (self.num_vectors, self.embedding_dim) if self.multivector else (self.embedding_dim,)

    def score(self, query_vectors: Any, document_vectors: Any, chunk_size: int = 1024) -> np.ndarray:
        """The ``(Nq, Nd)`` similarity matrix of queries against documents, as the store ranks them.

        Single-vector encoders: the dot product (the vectors are normalised, so cosine).
        Late-interaction encoders: MaxSim, the sum over query tokens of the best dot
        product with any document token (ColBERT; ReT-1's scoring). Accepts what
        ``encode*`` returns (numpy or torch); documents are scored in chunks so that the
        ``(Nq, chunk, Tq, Td)`` token-score block stays small.
        """
        q = torch.as_tensor(np.asarray(query_vectors, dtype=np.float32))
        d = torch.as_tensor(np.asarray(document_vectors, dtype=np.float32))
        return maxsim_scores(q, d, chunk_size).numpy() if self.multivector else (q @ d.T).numpy()

    @property
    def default_instruction(self) -> str:
        """The query instruction the model was trained with ("" for none)."""
        return ""

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights, so a store can tell whether it was built by this encoder.

        Covers the architecture (config) and the weights: the SHA-256 of each checkpoint
        file when loaded from disk (independent of the dtype used at run time, and the same
        for a hub snapshot and a local copy of it), else the parameters in memory.
        """
        if self._fingerprint is None:
            config = self.model.config.to_dict()
            config.pop("_name_or_path", None)  # where it was loaded from is not what it is
            digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
            files = sorted(self._source_dir.glob("*.safetensors")) if self._source_dir else []
            if files:
                for path in files:
                    digest.update(path.name.encode())
                    digest.update(_file_sha256(path).encode())
            else:
                for name, tensor in sorted(self.model.state_dict().items()):
                    digest.update(name.encode())
                    digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    # ------------------------------------------------------------------ encoding
    def query_text(self, question: str, instruction: str | None = None) -> str:
        """``"{instruction} {question}"``; the model's trained instruction by default, none if ``""``."""
        instruction = self.default_instruction if instruction is None else instruction
        return f"{instruction} {question}".strip() if instruction else question

    def encode_queries(
        self,
        questions: Sequence[str | None],
        images: Sequence[ImageLike] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Encode queries (with the query-side cell): each question is prefixed with the query instruction."""
        images = list(images) if images is not None else [None] * len(questions)
        if len(images) != len(questions):
            raise ValueError(f"got {len(questions)} questions but {len(images)} images")
        # As in ReT-M2KR, an image-only query still carries the instruction as its text.
        texts = [self.query_text(q or "", instruction) or None for q in questions]
        return self.encode([RetrievalItem(t, im) for t, im in zip(texts, images)], side="query", **kwargs)

    def encode_documents(
        self, texts: Sequence[str | None], images: Sequence[ImageLike] | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Encode documents (passages, optionally with their image) with the document-side cell."""
        images = list(images) if images is not None else [None] * len(texts)
        if len(images) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(images)} images")
        return self.encode([RetrievalItem(t, im) for t, im in zip(texts, images)], side="document", **kwargs)

    def encode(
        self,
        items: Iterable[Any],
        batch_size: int = 32,
        show_progress: bool = False,
        on_bad_image: BadImageCallback | None = None,
        as_tensor: bool = False,
        side: str = "document",
    ) -> np.ndarray | torch.Tensor:
        """Encode items (``RetrievalItem``, ``{"text", "image"}``, ``(text, image)`` or a string).

        Returns float32 L2-normalised vectors, one row per item in the given order:
        ``(N, dim)``, or ``(N, num_vectors, dim)`` for a late-interaction encoder.
        ``side``: ``"document"`` (the default: what indexing embeds) or ``"query"``; it
        picks the cell of an encoder with separate query and document sides
        (:meth:`encode_queries` / :meth:`encode_documents` set it).
        A missing/unreadable image raises :class:`ItemError`, unless ``on_bad_image`` is
        given: then it is called with ``(index, message)`` and the item is encoded
        from its text alone (an item left with neither text nor image still raises).
        """
        items = [RetrievalItem.coerce(item, i) for i, item in enumerate(items)]
        for i, item in enumerate(items):
            if not item.has_text and not item.has_image:
                raise ItemError(i, "has neither text nor image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document', got {side!r}")
        out = torch.empty((len(items), *self.output_shape), dtype=torch.float32)
        # Length bucketing: similar items share a batch, so padding (and wasted compute) is small.
        order = sorted(range(len(items)), key=lambda i: (items[i].has_image, len(items[i].text or "")))
        bar = tqdm(total=len(items), desc="encoding", unit="item", disable=not show_progress, smoothing=0.05)

        decode_size = self.image_decode_size if side == "document" else None

        def prepare(idx: list[int], pool: ThreadPoolExecutor | None) -> Any:
            texts = [items[i].text if items[i].has_text else None for i in idx]
            def load(i: int) -> Any:
                return self._load(items[i], i, on_bad_image, decode_size)

            images = list(pool.map(load, idx) if pool is not None else map(load, idx))
            return self._prepare(texts, images)

        if len(order) <= batch_size and sum(_needs_decoding(item) for item in items) < 2:
            # One batch of images already in memory (a server's queries): nothing to overlap or
            # decode in parallel, and thread hand-offs would cost more than they save.
            out[order] = self._run(prepare(order, None), side)
            bar.update(len(order))
        else:
            # The next batch is prepared (images decoded in `image_workers` threads, tokenised,
            # resized, pinned) in a thread while the current one runs on the device.
            pending: deque[tuple[list[int], Future]] = deque()
            with ThreadPoolExecutor(max_workers=self.image_workers) as pool, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-prepare") as preparer:
                try:
                    for start in range(0, len(order), batch_size):
                        idx = order[start : start + batch_size]
                        pending.append((idx, preparer.submit(prepare, idx, pool)))
                        while len(pending) > 1 or (pending and start + batch_size >= len(order)):
                            done_idx, prepared = pending.popleft()
                            out[done_idx] = self._run(prepared.result(), side)
                            bar.update(len(done_idx))
                finally:
                    for _, future in pending:
                        future.cancel()
        bar.close()
        return out if as_tensor else out.numpy()

    def _prepare(self, texts: list[str | None], images: list[Any]) -> Any:
        """The host-side part of a batch (runs in a worker thread); by default nothing is done ahead."""
        return texts, images

    def _run(self, prepared: Any, side: str = "document") -> torch.Tensor:
        """The device part of a batch prepared by :meth:`_prepare`, on ``side``; float32 CPU vectors."""
        return self._encode_batch(*prepared, side)

    def _load(self, item: RetrievalItem, index: int, on_bad_image: BadImageCallback | None,
              decode_size: int | None = None):
        if not item.has_image:
            return None
        try:
            return reduce_to_side(load_image(item.image, index, decode_size), self.image_decode_size)
        except ItemError as exc:
            if on_bad_image is None or not item.has_text:
                raise
            on_bad_image(index, str(exc))
            return None

    def _encode_batch(self, texts: list[str | None], images: list[Any], side: str = "document") -> torch.Tensor:
        """Embed one batch (``None`` marks a missing modality) on ``side``; returns float32 CPU vectors."""
        raise NotImplementedError  # pragma: no cover - abstract


def _needs_decoding(item: RetrievalItem) -> bool:
    """Whether ``item``'s image is still to be read and decoded (a path, URL or bytes, not a PIL image)."""
    from PIL import Image

    return item.has_image and not isinstance(item.image, Image.Image)


class ReT2Encoder(BaseEncoder):
    """Encode queries and documents (text, image, or both) into one shared vector space.

    Example::

        encoder = ReT2Encoder.from_pretrained("path/or/hub-id")
        q = encoder.encode_queries(["Which year was this building completed?"], images=["photo.jpg"])
        d = encoder.encode_documents(["The tower was completed in 1889 ..."])
        scores = encoder.score(q, d)      # (1, 1): dot product, or MaxSim for late interaction
    """

    def __init__(
        self,
        model: ReT2Model,
        processor: ReT2Processor,
        name_or_path: str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        image_workers: int = 4,
    ):
        super().__init__(model, name_or_path or "ret2", revision, device, dtype, image_workers)
        self.processor = processor
        self.image_decode_size = processor.decode_size

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> "ReT2Encoder":
        """Load a ReT-2 checkpoint (hub id or local directory) with its processor.

        A released ReT checkpoint (``model_type: "retriever"``, e.g.
        ``aimagelab/ReT-CLIP-ViT-L-14``) is converted on the fly into our format, once:
        the result is cached (:func:`retriever.convert.converted_checkpoint`).
        """
        from ret2vqa.hub import resolve_model

        from .convert import converted_checkpoint, is_released_checkpoint

        local = resolve_model(name_or_path, revision, config_field="encoder.name_or_path")
        if is_released_checkpoint(local):
            local = str(converted_checkpoint(local, source_name=name_or_path))
        model = ReT2Model.from_pretrained(local)
        processor = ReT2Processor.from_pretrained(local)
        encoder = cls(model, processor, name_or_path=name_or_path, revision=revision, device=device, dtype=dtype,
                      **kwargs)
        encoder._source_dir = Path(local)
        return encoder

    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **config_kwargs: Any,
    ) -> "ReT2Encoder":
        """A new ReT-2 (untrained cell) on a pretrained CLIP / SigLIP backbone: the start of training."""
        from ret2vqa.hub import resolve_model

        model = ReT2Model.from_backbone(backbone_name_or_path, revision=revision, **config_kwargs)
        local = resolve_model(backbone_name_or_path, revision, config_field="backbone")
        processor = ReT2Processor.from_pretrained(
            local, spec=model.spec, max_text_length=model.config.max_text_length
        )
        return cls(model, processor, name_or_path=f"ret2-untrained:{backbone_name_or_path}", device=device,
                   dtype=dtype)

    def save_pretrained(self, directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save weights (safetensors), config and processor so that ``from_pretrained(directory)`` restores them."""
        self.model.save_pretrained(directory, **kwargs)
        self.processor.save_pretrained(directory)

    # ------------------------------------------------------------------ identity
    @property
    def config(self) -> ReT2Config:
        return self.model.config

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.embedding_dim)

    @property
    def num_vectors(self) -> int | None:
        return self.model.config.num_output_vectors

    @property
    def default_instruction(self) -> str:
        return self.model.config.query_instruction or ""

    def _prepare(self, texts: list[str | None], images: list[Any]) -> Any:
        batch = self.processor(texts, images, pad_to_max_length=self.compiled is not None)
        if self.device.type == "cuda":  # page-locked: the copy to the GPU can then overlap compute
            for key, value in list(batch.items()):
                if torch.is_tensor(value):
                    batch[key] = value.pin_memory()
        return batch

    @torch.inference_mode()
    def _run(self, prepared: Any, side: str = "document") -> torch.Tensor:
        batch = self._to_device(prepared)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        embeddings = self._forward(**batch, side=side).embeddings
        return embeddings.float().cpu()

    def _encode_batch(self, texts: list[str | None], images: list[Any], side: str = "document") -> torch.Tensor:
        return self._run(self._prepare(texts, images), side)

    def __repr__(self) -> str:
        return (f"ReT2Encoder(name_or_path={self.name_or_path!r}, backbone={self.model.spec.name}, "
                f"dim={self.embedding_dim}, device={self.device}, dtype={self.dtype})")


def maxsim_scores(queries: torch.Tensor, documents: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """MaxSim of ``(Nq, Tq, D)`` queries against ``(Nd, Td, D)`` documents: ``(Nq, Nd)``.

    ``score(q, d) = sum_i max_j <q_i, d_j>``. Differentiable (the training loss uses it);
    documents are taken ``chunk_size`` at a time so memory stays ``Nq * chunk * Tq * Td``.
    """
    if queries.dim() != 3 or documents.dim() != 3:
        raise ValueError(f"MaxSim needs (N, T, D) queries and documents, got {tuple(queries.shape)} and "
                         f"{tuple(documents.shape)}")
    parts = [torch.einsum("qtd,nsd->qnts", queries, documents[i:i + chunk_size]).amax(dim=-1).sum(dim=-1)
             for i in range(0, documents.shape[0], chunk_size)]
    return torch.cat(parts, dim=1) if parts else queries.new_zeros((queries.shape[0], 0))
