"""Opening an image reference (PIL image, path, URL or data URI) as an RGB PIL image.

The retriever, the generator and the pipeline all accept "an image" in these forms;
this is the one place that turns it into pixels, with errors that name the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: :func:`reduce_to_side` keeps at least this many times the model's side, like Pillow's own
#: ``resize(reducing_gap=2.0)``: the model's resize then starts from a small image and its
#: result is practically the same as resizing the full photo.
REDUCING_GAP = 2


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


def image_side(image_processor: Any) -> int | None:
    """The side, in pixels, that both sides of an image may be cut to before ``image_processor``
    still only shrinks it (``None``: unknown, keep the image whole).

    CLIP-style processors: the shortest edge; fixed height and width (SigLIP): the larger of
    the two; SigLIP 2: the side of a square with its patch budget; Qwen2-VL (whose ``size``
    counts pixels, ``longest_edge`` being ``max_pixels``): the square root of its pixel
    budget, since a resized image's shorter side never exceeds it; LLaVA-NeXT / OneVision:
    the largest of its ``image_grid_pinpoints``; Idefics3 / SmolVLM: ``longest_edge``.
    """
    size = getattr(image_processor, "size", None)  # a dict, or transformers 5's SizeDict

    def field(name: str) -> Any:
        return size.get(name) if isinstance(size, dict) else getattr(size, name, None)

    if getattr(image_processor, "merge_size", None) and getattr(image_processor, "temporal_patch_size", None):
        max_pixels = getattr(image_processor, "max_pixels", None) or field("longest_edge")
        return math.isqrt(int(max_pixels) - 1) + 1 if max_pixels else None
    pinpoints = getattr(image_processor, "image_grid_pinpoints", None)
    if pinpoints:
        return int(max(max(point) for point in pinpoints))
    if field("shortest_edge"):
        return int(field("shortest_edge"))
    if field("height") and field("width"):
        return int(max(field("height"), field("width")))
    if field("longest_edge"):
        return int(field("longest_edge"))
    patches, patch = getattr(image_processor, "max_num_patches", None), getattr(image_processor, "patch_size", None)
    if patches and patch:
        return int(patch * math.isqrt(int(patches)))
    return None


def reduce_to_side(image: Any, side: int | None) -> Any:
    """``image`` shrunk by the largest whole factor that keeps both sides >= ``REDUCING_GAP * side``.

    A model's processor resizes a photo to about ``side`` pixels (:func:`image_side`) with a
    filter whose cost grows with the source: a 4000 x 3000 photo for a 224-pixel encoder is
    mostly wasted work. ``Image.reduce`` (a box average over ``factor x factor`` pixels, what
    Pillow's ``resize(reducing_gap=...)`` does first) cuts it cheaply and the processor does
    the last step. It depends on the pixels only, so an image gives the same model input
    whether it came as a path, as uploaded bytes or as a PIL image. ``None`` passes through.
    """
    if image is None or not side:
        return image
    factor = min(image.size) // (REDUCING_GAP * int(side))
    return image.reduce(factor) if factor >= 2 else image
