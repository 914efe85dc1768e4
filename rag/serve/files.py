"""Passage images, served only from the collection's image root.

A passage's stored image path comes from the knowledge-base file, which the server
does not trust either: the path must be relative, contain no ``..`` and, once every
symlink is resolved, still lie inside the image root. Anything else is answered as
"no image" (404), the same as a passage without one, so the endpoint reveals nothing
about the server's files.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

#: Suffixes served, with their media types (a passage image of another type is not served).
IMAGE_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                     ".gif": "image/gif", ".bmp": "image/bmp"}


def confined_image_path(root: Path | None, stored: str | None) -> Path | None:
    """``root / stored`` when it is an existing image file inside ``root`` (symlinks resolved), else ``None``."""
    if root is None or not stored or "\x00" in stored:
        return None
    relative = PurePosixPath(stored.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or (relative.parts and ":" in relative.parts[0]):
        return None
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root / Path(*relative.parts)))
    if not candidate.is_relative_to(real_root) or candidate == real_root:
        return None
    if candidate.suffix.lower() not in IMAGE_MEDIA_TYPES or not candidate.is_file():
        return None
    return candidate
