"""Opening an image reference (PIL image, path, URL or data URI) as an RGB PIL image.

The retriever, the generator and the pipeline all accept "an image" in these forms;
this is the one place that turns it into pixels, with errors that name the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_image(image: Any, min_size: int | None = None) -> Any | None:
    """Return an RGB ``PIL.Image`` for ``image`` (a PIL image, a path, a URL or base64 data), or ``None``.

    A missing file raises :class:`~ret2vqa.errors.MissingFileError` ("image file not found:
    PATH"); an unreadable one :class:`~ret2vqa.errors.ImageError` ("cannot read image PATH:
    ..."), instead of a traceback from deep inside PIL. Unreadable covers every way a
    hostile or damaged file fails to decode: truncated data, a decompression bomb (an
    image over PIL's ``MAX_IMAGE_PIXELS`` limit, refused from its header before any pixel
    is decoded), malformed chunks (PIL raises ``SyntaxError``, ``struct.error``, ...).
    Callers treat it like a missing image: the passage is encoded text-only, the query
    refused, each reported with the file.

    ``min_size``: the model will shrink the image to about this many pixels a side anyway,
    so a JPEG file is decoded at the largest reduced scale (1/2, 1/4, 1/8) that still keeps
    both sides >= ``min_size`` (``PIL.Image.draft``): several times less decoding work for
    large photos, and the model's own resize still does the final step.
    """
    if image is None:
        return None
    from PIL import Image, UnidentifiedImageError

    from .errors import ImageError, MissingFileError

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, Path) or (isinstance(image, str) and not image.startswith(("http://", "https://", "data:"))):
        path = Path(image).expanduser()
        if not path.is_file():
            raise MissingFileError(path, "image file")
        try:
            with Image.open(path) as img:
                if min_size:
                    img.draft("RGB", (min_size, min_size))
                img.load()
                return img.convert("RGB")
        except Image.DecompressionBombError as exc:
            raise ImageError(f"cannot read image {path}: refused as a possible decompression bomb ({exc})") from exc
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageError(f"cannot read image {path}: {exc}") from exc
        except MemoryError as exc:
            raise ImageError(f"cannot read image {path}: too large to decode in memory") from exc
        except Exception as exc:  # hostile files reach PIL's parsers (SyntaxError, struct.error, IndexError...)
            raise ImageError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(image, str):
        from transformers.image_utils import load_image as hf_load_image

        try:
            return hf_load_image(image).convert("RGB")
        except Exception as exc:  # network errors, bad base64: one clear message
            raise ImageError(f"cannot read image {image[:80]!r}: {type(exc).__name__}: {exc}") from exc
    raise TypeError(f"an image must be a PIL image, a path or a URL, got {type(image).__name__}")
