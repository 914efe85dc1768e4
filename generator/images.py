"""Turning a request's image reference (PIL image, path or URL) into an RGB PIL image."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_image(image: Any) -> Any | None:
    """Return an RGB ``PIL.Image`` for ``image`` (a PIL image, a path, a URL or base64 data), or ``None``.

    A missing file raises :class:`FileNotFoundError` naming it; an unreadable one a
    :class:`ValueError` naming it, instead of a traceback from deep inside PIL.
    """
    if image is None:
        return None
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, Path) or (isinstance(image, str) and not image.startswith(("http://", "https://", "data:"))):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{path}: not a readable image ({exc})") from exc
    if isinstance(image, str):
        from transformers.image_utils import load_image as hf_load_image

        try:
            return hf_load_image(image).convert("RGB")
        except Exception as exc:  # network errors, bad base64: one clear message
            raise ValueError(f"could not load image {image[:80]!r}: {type(exc).__name__}: {exc}") from exc
    raise TypeError(f"image must be a PIL image, a path or a URL, got {type(image).__name__}")
