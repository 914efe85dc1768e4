"""Turning items (optional text, optional image) into ReT-2 model inputs.

An item is a query or a document: text, image, or both. :class:`ReT2Processor` pairs
the backbone's tokenizer and image processor and builds one padded batch with a
``text_mask`` / ``image_mask`` per item, and the same presence as plain Python data
(``text_presence`` / ``image_presence``: ``"all"``, ``"some"`` or ``"none"``, with
``text_rows`` / ``image_rows`` when only some items have it) for a forward without host syncs. A missing modality gets a cheap placeholder
row (the empty string, or zeros for pixels) that the model never looks at.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, BatchEncoding

from ret2vqa.errors import ConfigError, InputError
from ret2vqa.images import image_side

from .backbones import BackboneSpec, backbone_spec
from .modeling_ret2 import presence_of

ImageLike = Union[Image.Image, str, os.PathLike, None]
PROCESSOR_FILE = "ret2_processor.json"


class ItemError(InputError):
    """An item that cannot be encoded; the message names the item's index."""

    def __init__(self, index: int, message: str):
        self.index = index
        super().__init__(f"item {index}: {message}")


@dataclass
class RetrievalItem:
    """A query or document: optional ``text`` and optional ``image`` (PIL image or file path)."""

    text: str | None = None
    image: ImageLike = None

    @classmethod
    def coerce(cls, item: Any, index: int) -> "RetrievalItem":
        """Accept a :class:`RetrievalItem`, a ``{"text", "image"}`` mapping, a ``(text, image)`` pair or a string."""
        if isinstance(item, RetrievalItem):
            return item
        if isinstance(item, str):
            return cls(text=item)
        if isinstance(item, Image.Image):
            return cls(image=item)
        if isinstance(item, Mapping):
            unknown = set(item) - {"text", "image"}
            if unknown:
                raise ItemError(index, f"unknown keys {sorted(unknown)} (expected 'text' and/or 'image')")
            return cls(text=item.get("text"), image=item.get("image"))
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return cls(text=item[0], image=item[1])
        raise ItemError(index, f"cannot interpret {type(item).__name__} as an item (use RetrievalItem(text, image))")

    @property
    def has_text(self) -> bool:
        return isinstance(self.text, str) and bool(self.text.strip())

    @property
    def has_image(self) -> bool:
        return self.image is not None and self.image != ""


def load_image(image: ImageLike, index: int, min_size: int | None = None) -> Image.Image:
    """Open ``image`` (PIL image, path or URL) as RGB; a missing or unreadable one raises :class:`ItemError`.

    ``min_size``: decode a JPEG file at a reduced scale that keeps both sides >= this
    (see :func:`ret2vqa.images.load_image`)."""
    from ret2vqa.images import load_image as open_image

    try:
        return open_image(image, min_size)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise ItemError(index, str(exc)) from exc


class ReT2Processor:
    """Tokenizer + image processor of a ReT-2 encoder, saved alongside the model.

    Texts are truncated to ``max_text_length`` tokens and padded as the backbone was
    trained (longest for CLIP, fixed length for SigLIP).
    """

    def __init__(self, tokenizer, image_processor, spec: BackboneSpec | str, max_text_length: int):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.spec = backbone_spec(spec) if isinstance(spec, str) else spec
        self.max_text_length = int(max_text_length)

    @property
    def decode_size(self) -> int | None:
        """The side, in pixels, that images are resized to (about), so files can be decoded no larger."""
        return image_side(self.image_processor)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        settings = {"backbone": self.spec.name, "max_text_length": self.max_text_length}
        (directory / PROCESSOR_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, spec: BackboneSpec | str | None = None, max_text_length: int | None = None
    ) -> "ReT2Processor":
        """Load from a ReT-2 checkpoint directory, or from a backbone directory (then pass ``spec``)."""
        directory = Path(directory)
        settings_path = directory / PROCESSOR_FILE
        settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
        spec = spec or settings.get("backbone")
        if spec is None:
            raise ConfigError(
                f"{directory}: not a ReT-2 checkpoint (no {PROCESSOR_FILE}); pass the backbone type (spec=...)"
            )
        max_len = max_text_length or settings.get("max_text_length")
        tokenizer = AutoTokenizer.from_pretrained(directory)
        image_processor = AutoImageProcessor.from_pretrained(directory)
        if max_len is None:
            max_len = min(getattr(tokenizer, "model_max_length", 77) or 77, 512)
        return cls(tokenizer, image_processor, spec, max_len)

    # ------------------------------------------------------------------ batching
    def __call__(self, texts: Sequence[str | None], images: Sequence[Image.Image | None],
                 pad_to_max_length: bool = False) -> BatchEncoding:
        """One model batch from parallel lists of (already loaded) texts and images.

        ``pad_to_max_length``: pad every text to ``max_text_length`` tokens (fixed shapes
        for a compiled model) instead of the backbone's own padding."""
        if len(texts) != len(images):
            raise ValueError(f"got {len(texts)} texts but {len(images)} images")
        batch = len(texts)
        has_text = [bool(t) for t in texts]
        has_image = [im is not None for im in images]
        for i, (t, im) in enumerate(zip(has_text, has_image)):
            if not (t or im):
                raise ItemError(i, "has neither text nor image")
        data: dict[str, Any] = {
            "text_mask": torch.tensor([1.0 if t else 0.0 for t in has_text]),
            "image_mask": torch.tensor([1.0 if im else 0.0 for im in has_image]),
            # The same presence as plain Python data (and row indices), so the model's
            # forward decides what to skip without reading a tensor back from the device.
            "text_presence": presence_of(has_text),
            "image_presence": presence_of(has_image),
        }
        for name, flags in (("text_rows", has_text), ("image_rows", has_image)):
            if presence_of(flags) == "some":
                data[name] = torch.tensor([i for i, f in enumerate(flags) if f], dtype=torch.long)
        if any(has_text):
            # Only the first max_text_length tokens are kept: cut the text first (no tokenizer packs
            # more than 64 characters into a token), so a megabyte of text costs what a page does.
            head = self.max_text_length * 64
            encoded = self.tokenizer(
                [t[:head] if t else "" for t in texts],
                padding="max_length" if pad_to_max_length else self.spec.text_padding,
                truncation=True,
                max_length=self.max_text_length,
                return_attention_mask=True,
                return_tensors="pt",
            )
            data["input_ids"] = encoded["input_ids"]
            data["attention_mask"] = encoded["attention_mask"]
        present = [i for i, im in enumerate(images) if im is not None]
        if present:
            processed = self.image_processor(images=[images[i] for i in present], return_tensors="pt")
            rows = torch.tensor(present)
            for key, value in processed.items():
                if not torch.is_tensor(value):
                    continue
                full = value.new_zeros((batch, *value.shape[1:]))
                if key == "spatial_shapes":  # keep placeholder rows well-formed for SigLIP 2
                    full[:] = value[0]
                full[rows] = value
                data[key] = full
        return BatchEncoding(data)
