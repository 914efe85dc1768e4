"""Indexing throughput: the whole ``index build`` path against pure encoding, in one run.

A KB of ``--passages`` text+image passages (default 3,000) is generated from the bundled
photos (``rag/demo/images``, plus ``../shared/data/images`` when present): each passage
gets its own JPEG file (a crop, flip and size of one of the photos) and a text of 30 to
90 words. Then, in alternating rounds, the same passages go through

* ``encode_only``: ``encoder.encode`` of the items with their images already decoded in
  memory (as the encoder decodes files: see ``image_decode_size``), i.e. the encoder's own
  cost (tokenising, resizing, the forward);
* ``end_to_end``: :func:`rag.ingest.build_index` into a fresh Qdrant Edge collection:
  reading the jsonl, decoding the image files in worker threads, encoding, upserting,
  flushing and recording progress (the HNSW build, ``optimize``, is not included: it
  runs once at the end of a build and is measured by ``bench/store.py``).

``ratio`` = end-to-end passages/s over encode-only passages/s (target >= 0.9: reading,
decoding and writing hide behind the encoder). The encoder batch size is chosen by the
bench (the fastest of ``--batch-sizes`` on a sample, encode-only); the ingest batch is
``--ingest-batches`` encoder batches. Medians over ``--rounds``.

    python bench/index.py --json OUT.json                          # tiny random ReT-2 on the CPU
    python bench/index.py --config configs/gpu.yaml --json OUT.json # the config's encoder (e.g. on a GPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the tower bridge museum river painting built century king queen city north south station "
         "cathedral garden mountain lake island festival war treaty author novel species bird flower "
         "located famous designed opened closed rebuilt named after founded largest oldest").split()


def source_images() -> list[Path]:
    """The photos the KB images are cut from (bundled demo images, plus the shared test data)."""
    folders = [ROOT / "rag" / "demo" / "images", ROOT.parent / "shared" / "data" / "images",
               ROOT / "tests" / "fixtures" / "images"]
    found = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())
             if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not found:
        raise SystemExit("bench/index.py: no source images found (rag/demo/images is part of the repository)")
    return found


def write_kb(directory: Path, n: int, seed: int = 0) -> Path:
    """``n`` jsonl passages with text and their own image file; returns the jsonl path."""
    from PIL import Image, ImageOps

    rng = random.Random(seed)
    photos = [Image.open(p).convert("RGB") for p in source_images()]
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = photo.crop((x, y, x + cw, y + ch))
        side = rng.choice((256, 320, 400, 512))
        image = image.resize((side, max(16, int(side * ch / cw))))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        name = f"images/p{i:06d}.jpg"
        image.save(directory / name, quality=88)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 90))).capitalize() + "."
        rows.append({"id": f"p{i}", "text": text, "image": name})
    kb = directory / "kb.jsonl"
    kb.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return kb


def sized_encoder(backbone: str, device: str | None, dtype: str):
    """A random-weight ReT-2 encoder at the sizes of a public CLIP (``bench/encoder.py``'s table)."""
    import torch
    from transformers import CLIPConfig

    from rag.tiny_models import build_tiny_ret2_processor
    from retriever import ReT2Config, ReT2Encoder, ReT2Model

    sys.path.insert(0, str(ROOT / "bench"))
    from encoder import BACKBONES

    config = CLIPConfig(**BACKBONES[backbone])
    processor = build_tiny_ret2_processor("clip", image_size=config.vision_config.image_size, max_text_length=77)
    config.text_config.vocab_size = len(processor.tokenizer)  # the tiny tokenizer's ids
    torch.manual_seed(0)
    model = ReT2Model(ReT2Config(backbone_config=config, max_text_length=77))
    return ReT2Encoder(model, processor, name_or_path=f"random:{backbone}", device=device, dtype=dtype,
                       image_workers=min(16, os.cpu_count() or 4))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="pipeline YAML whose encoder is measured (default: tiny random ReT-2, CPU)")
    parser.add_argument("--backbone", choices=["clip-vit-b32", "clip-vit-l14"],
                        help="instead of a config: a random-weight ReT-2 at these CLIP sizes (224-pixel images, "
                             "77-token texts), e.g. on a GPU with no checkpoint at hand")
    parser.add_argument("--passages", type=int, default=3000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="encoder batch sizes to choose from (default: 16 32 64 on CPU, 64 128 256 on GPU)")
    parser.add_argument("--ingest-batches", type=int, default=8,
                        help="encoder batches per ingest batch (what is upserted and checkpointed together)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", help="override the encoder's device")
    parser.add_argument("--workdir", help="where the KB and the collection go (default: a temporary folder)")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from rag.components import build_encoder
    from rag.config import PipelineConfig
    from rag.ingest import IngestConfig, build_index
    from rag.store import StoreConfig
    from ret2vqa.images import load_image
    from retriever import EncoderConfig

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.config:
        base = PipelineConfig.from_yaml(args.config)
        encoder_config = base.encoder
    else:
        encoder_config = EncoderConfig(name_or_path="tiny-random/clip", revision="seed0", device="cpu")
    if args.device:
        encoder_config = replace(encoder_config, device=args.device)
    if args.backbone:
        encoder = sized_encoder(args.backbone, encoder_config.device, encoder_config.dtype)
        encoder_config = replace(encoder_config, name_or_path=f"{args.backbone} (random weights)")
    else:
        encoder = build_encoder(encoder_config)
    on_gpu = encoder.device.type == "cuda"
    sizes = args.batch_sizes or ([64, 128, 256] if on_gpu else [16, 32, 64])

    t0 = time.perf_counter()
    kb = write_kb(work / "kb", args.passages)
    rows = [json.loads(line) for line in kb.read_text(encoding="utf-8").splitlines()]
    print(f"wrote {len(rows)} passages with their images in {time.perf_counter() - t0:.1f} s ({kb})")
    # Decoded as the encoder decodes files (at a reduced JPEG scale when the model's input is
    # small), so both sides resize the same pixels: the ratio is what reading, decoding and
    # writing add, nothing else.
    decoded = [{"text": r["text"], "image": load_image(str(kb.parent / r["image"]), encoder.image_decode_size)}
               for r in rows]

    def encode_only(batch_size: int, items=decoded) -> float:
        start = time.perf_counter()
        encoder.encode(items, batch_size=batch_size)
        return len(items) / (time.perf_counter() - start)

    # Warm-up (thread pools, allocator, compilation if configured), then the batch size.
    sample = decoded[: min(len(decoded), 4 * max(sizes))]
    encode_only(max(sizes), sample)
    trial = {b: encode_only(b, sample) for b in sizes}
    batch_size = max(trial, key=trial.get)
    ingest_batch = batch_size * args.ingest_batches
    print("encoder batch size: " + ", ".join(f"{b}: {r:.1f}/s" for b, r in trial.items()) + f" -> {batch_size}")

    def end_to_end(round_index: int) -> tuple[float, int]:
        root = work / f"store-{round_index}"
        shutil.rmtree(root, ignore_errors=True)
        config = PipelineConfig(
            encoder=replace(encoder_config, batch_size=batch_size),
            store=StoreConfig(path=str(root), collection="bench"),
            ingest=IngestConfig(batch_size=ingest_batch, optimize=False, count_records=False),
            generator=None,
        )
        start = time.perf_counter()
        report = build_index(config, kb, "jsonl", encoder=encoder, show_progress=False)
        total = time.perf_counter() - start
        # Throughput from the first read to the last write; opening and closing the store
        # (once per build, whatever its size) is reported apart.
        setup_s.append(round(total - report.seconds, 3))
        return report.passages_this_run / report.seconds, report.collection_count

    encode_rates, e2e_rates, counts, setup_s = [], [], [], []
    for r in range(args.rounds):  # alternate, so drifts of a shared machine hit both alike
        encode_rates.append(encode_only(batch_size))
        rate, count = end_to_end(r)
        e2e_rates.append(rate)
        counts.append(count)
    if any(c != len(rows) for c in counts):
        raise SystemExit(f"bench/index.py: the collection holds {counts} points, expected {len(rows)}")
    encode_per_s, e2e_per_s = statistics.median(encode_rates), statistics.median(e2e_rates)
    ratio = e2e_per_s / encode_per_s
    device = encoder.device
    result = {
        "encode_only_per_s": round(encode_per_s, 1),
        "end_to_end_per_s": round(e2e_per_s, 1),
        "ratio": round(ratio, 3),
        "target_ratio": 0.9,
        "met": bool(ratio >= 0.9),
        "encoder_batch_size": batch_size,
        "ingest_batch_size": ingest_batch,
        "batch_size_trial_per_s": {str(b): round(v, 1) for b, v in trial.items()},
        "store_open_close_s": setup_s,
        "rounds": {"encode_only_per_s": [round(v, 1) for v in encode_rates],
                   "end_to_end_per_s": [round(v, 1) for v in e2e_rates]},
        "setting": {
            "encoder": f"{encoder_config.name_or_path} ({encoder_config.type})",
            "passages": len(rows), "device": str(device), "dtype": str(encoder.dtype).replace("torch.", ""),
            "image_workers": encoder.image_workers, "compile": encoder_config.compile,
            "threads": torch.get_num_threads(), "store": "Qdrant Edge (embedded), optimize not timed",
            "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        },
    }
    print(f"{len(rows)} text+image passages, {device}, encoder batch {batch_size}, ingest batch {ingest_batch}, "
          f"medians of {args.rounds} rounds")
    print(f"{'encode only':<14} {encode_per_s:>10.1f} passages/s")
    print(f"{'end to end':<14} {e2e_per_s:>10.1f} passages/s   ratio {ratio:.3f} (target >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
