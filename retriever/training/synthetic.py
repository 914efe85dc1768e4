"""A small synthetic retrieval task: coloured shapes paired with their descriptions.

Used for offline smoke runs (``configs/train/tiny-synthetic.yaml``) and tests: images
of a red circle, a blue triangle, ... are queries; the matching description is the
positive passage. Twelve classes (4 colours x 3 shapes), so recall@1 by chance is 1/12.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(colour: str, shape: str, rng: random.Random, size: int = 64) -> Image.Image:
    """One image: a ``shape`` of ``colour`` at a random place and size on a noisy grey background."""
    grey = rng.randint(90, 160)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    extent = rng.randint(size // 3, size // 2 + size // 4)
    x0 = rng.randint(0, size - extent)
    y0 = rng.randint(0, size - extent)
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0, y0 + extent), (x0 + extent, y0 + extent), (x0 + extent // 2, y0)], fill=fill)
    return img


def write_shapes_dataset(directory: str | Path, per_class: int = 40, val_per_class: int = 5, seed: int = 0
                         ) -> tuple[Path, Path]:
    """Write images and ``train.jsonl`` / ``val.jsonl`` in the ``pairs`` format; returns both paths."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = {}
    for split, count in (("train", per_class), ("val", val_per_class)):
        rows = []
        for colour in COLOURS:
            for shape in SHAPES:
                for i in range(count):
                    name = f"images/{split}-{colour}-{shape}-{i}.png"
                    draw_shape(colour, shape, rng).save(directory / name)
                    rows.append({"query": None, "query_image": name, "passage": f"a {colour} {shape}",
                                 "passage_image": None, "entity_id": f"{colour}-{shape}"})
        rng.shuffle(rows)
        paths[split] = directory / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths["train"], paths["val"]


if __name__ == "__main__":  # python -m retriever.training.synthetic OUT_DIR
    import sys

    train, val = write_shapes_dataset(sys.argv[1] if len(sys.argv) > 1 else "runs/shapes-data")
    print(f"wrote {train} and {val}")
