"""Finding the image file of an E-VQA ``dataset_image_ids`` entry.

E-VQA images come from two datasets that the user downloads separately (their terms
forbid redistribution), so resolution is configured by the local layout:

* ``inaturalist`` (iNaturalist 2021): ids map to ``file_name`` through an ``{id: file_name}``
  JSON (EchoSight's ``train_id2name.json`` / ``val_id2name.json``) or the official
  COCO-style annotation file (``{"images": [{"id", "file_name"}, ...]}``, e.g.
  ``val.json``); the path is ``<inaturalist_root>/<file_name>``. E-VQA test images are
  iNat-2021 *val* images.
* ``landmarks`` (Google Landmarks v2): ``<landmarks_root>/<id[0]>/<id[1]>/<id[2]>/<id>.jpg``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ret2vqa.errors import InputError, MissingFileError

from .data import EVQAQuestion


def landmarks_relative_path(image_id: str) -> Path:
    """GLDv2's sharded layout: ``a/b/c/abc123....jpg`` for id ``abc123...``."""
    if len(image_id) < 3:
        raise ValueError(f"Google Landmarks image id {image_id!r} is too short for the a/b/c/ layout")
    return Path(image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")


def load_inaturalist_id2name(path: str | Path) -> dict[str, str]:
    """``{image_id: file_name}`` from an id→name JSON or a COCO-style iNat annotation file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "iNaturalist id-to-file mapping")
    from ret2vqa.io import open_text

    with open_text(path) as fh:  # a byte-order mark is fine; bytes that are not UTF-8 name the line
        try:
            data = json.loads(fh.read())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return {str(img["id"]): str(img["file_name"]) for img in data["images"]}
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    raise InputError(f"{path}: expected an {{id: file_name}} object or a COCO file with an 'images' list")


@dataclass
class EVQAImageResolver:
    """Map ``(dataset_name, image_id)`` to a local file; roots left ``None`` are not configured."""

    inaturalist_root: str | Path | None = None
    inaturalist_id2name: str | Path | None = None
    landmarks_root: str | Path | None = None
    check_exists: bool = True

    def __post_init__(self) -> None:
        self._id2name: dict[str, str] | None = None

    def _inat_name(self, image_id: str) -> str:
        if self.inaturalist_id2name is None:
            raise ValueError(
                "resolving iNaturalist images needs inaturalist_id2name (an id→file_name JSON or COCO annotation file)"
            )
        if self._id2name is None:
            self._id2name = load_inaturalist_id2name(self.inaturalist_id2name)
        try:
            return self._id2name[image_id]
        except KeyError:
            raise FileNotFoundError(f"iNaturalist image id {image_id!r} is not in {self.inaturalist_id2name}") from None

    def resolve(self, dataset_name: str, image_id: str) -> Path:
        """The image path; FileNotFoundError (with what was tried) when ``check_exists`` and it is absent."""
        image_id = image_id.strip()
        if dataset_name == "inaturalist":
            if self.inaturalist_root is None:
                raise ValueError("resolving iNaturalist images needs inaturalist_root")
            path = Path(self.inaturalist_root) / self._inat_name(image_id)
        elif dataset_name == "landmarks":
            if self.landmarks_root is None:
                raise ValueError("resolving Google Landmarks images needs landmarks_root")
            path = Path(self.landmarks_root) / landmarks_relative_path(image_id)
        else:
            raise ValueError(f"unknown E-VQA image dataset {dataset_name!r} (expected 'inaturalist' or 'landmarks')")
        if self.check_exists and not path.is_file():
            raise FileNotFoundError(f"image {dataset_name}/{image_id} not found at {path}")
        return path

    def question_image(self, question: EVQAQuestion, which: int = 0) -> Path:
        """The ``which``-th image of a question (0: the conventional query image)."""
        return self.resolve(question.dataset_name, question.image_ids[which])
