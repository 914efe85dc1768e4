"""Turning a request's image reference (PIL image, path or URL) into an RGB PIL image.

The implementation is shared with the retriever: :func:`ret2vqa.images.load_image`.
"""

from ret2vqa.images import load_image

__all__ = ["load_image"]
