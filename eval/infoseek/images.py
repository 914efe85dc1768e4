"""Finding the OVEN image of an InfoSeek ``image_id`` (``oven_XXXXXXXX``, 8 digits).

Layouts seen in practice:

* ``sharded`` (official ``merge_oven_images.py``, UniIR): ``<root>/<XX>/<image_id><ext>``
  where ``XX`` are the first two of the eight digits (shards ``00``..``05``) and the
  extension varies;
* ``flat`` (M2KR, EchoSight): ``<root>/<image_id><ext>``;
* ``id2image``: a user-made jsonl of ``{"image_id", "image_path"}`` (the official
  inference scripts' convention); relative paths are taken from ``root``.

``layout="auto"`` tries sharded, then flat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ret2vqa.io import MalformedRows, iter_jsonl

OVEN_IMAGE_ID = re.compile(r"^oven_(\d{8})$")
DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".JPEG", ".jpeg", ".JPG", ".png")


def oven_shard(image_id: str) -> str:
    """The shard folder of an OVEN image id: ``oven_01963180`` → ``01``."""
    match = OVEN_IMAGE_ID.match(image_id)
    if not match:
        raise ValueError(f"not an OVEN image id (oven_ + 8 digits): {image_id!r}")
    return match.group(1)[:2]


def load_id2image(path: str | Path, errors: MalformedRows | None = None) -> dict[str, str]:
    """``{image_id: image_path}`` from an ``id2image.jsonl`` file."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    out = {}
    for line, row in iter_jsonl(path, errors):
        image_id, image_path = row.get("image_id"), row.get("image_path")
        if not isinstance(image_id, str) or not isinstance(image_path, str):
            errors.report(path, line, "expected string fields 'image_id' and 'image_path'")
            continue
        out[image_id] = image_path
    return out


@dataclass
class OvenImageResolver:
    """Map an InfoSeek/OVEN ``image_id`` to a local file."""

    root: str | Path
    layout: Literal["auto", "sharded", "flat"] = "auto"
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    id2image: str | Path | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("auto", "sharded", "flat"):
            raise ValueError(f"layout must be 'auto', 'sharded' or 'flat', got {self.layout!r}")
        self._mapping: dict[str, str] | None = None

    def candidates(self, image_id: str) -> list[Path]:
        """Every path tried for ``image_id``, in order."""
        root = Path(self.root)
        folders = []
        if self.layout in ("auto", "sharded"):
            folders.append(root / oven_shard(image_id))
        if self.layout in ("auto", "flat"):
            folders.append(root)
        return [folder / f"{image_id}{ext}" for folder in folders for ext in self.extensions]

    def resolve(self, image_id: str) -> Path:
        """The first existing candidate; FileNotFoundError listing the places tried otherwise."""
        if self.id2image is not None:
            if self._mapping is None:
                self._mapping = load_id2image(self.id2image)
            if image_id not in self._mapping:
                raise FileNotFoundError(f"image id {image_id!r} is not in {self.id2image}")
            path = Path(self._mapping[image_id])
            path = path if path.is_absolute() else Path(self.root) / path
            if not path.is_file():
                raise FileNotFoundError(f"image {image_id} not found at {path} (from {self.id2image})")
            return path
        tried = self.candidates(image_id)
        for path in tried:
            if path.is_file():
                return path
        shown = ", ".join(str(p) for p in tried[:3])
        raise FileNotFoundError(
            f"image {image_id} not found under {self.root} ({self.layout} layout); tried {shown}, ..."
        )
