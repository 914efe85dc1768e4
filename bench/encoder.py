"""Encoder cost: the bare backbone forward vs the full ReT-2 encoder, in one run.

The same batch (default: 64 image+text items, CLIP ViT-B/32 sizes, random weights)
goes through

* ``backbone``: the dual encoder's own forward (``get_text_features`` +
  ``get_image_features``), i.e. what a plain CLIP retriever pays;
* ``ret2``: the ReT-2 encoder with its default cell (as wide as the narrower tower:
  512 on B/32) and three tapped layers per tower;
* ``ret2-all-layers``: the same cell tapping every block (ReT-1 style, 12 steps);

plus, for reference, ReT-2 with ReT-1's 1024-wide cell, and ``ret-late-interaction``: the
layout of the released ReT-1 checkpoints (every block tapped, a 1024-wide cell, separate query
and document cells, 32 x 128 per-token output for MaxSim; the document side is timed). Each round runs every variant
once, in a freshly shuffled order (what ran just before matters on CPU: the allocator
hands back memory a big variant freed, and fresh pages cost page faults); a variant's
time is the median over rounds and its ratio is that median over the backbone's.
Every round's times are in the JSON (``rounds_ms``).
Peak memory is the CUDA high-water mark on GPU, else the peak
resident-set growth of this process during the variant.

``--compile MODE`` (``default``, ``reduce-overhead``, ``max-autotune``) adds the
backbone and ReT-2 run through ``torch.compile`` with that mode, and compares like with
like: ``ret2+compile`` against ``backbone+compile`` (``compiled_ratio``), the eager
ReT-2 against the eager backbone (``ratio``). ``--variants`` limits what runs (the
compiled pair is always backbone + ret2).

    python bench/encoder.py --json OUT.json
    python bench/encoder.py --device cuda --batch-size 256 --compile reduce-overhead --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# CLIPConfig arguments reproducing the sizes of the public checkpoints (weights stay random).
BACKBONES = {
    "clip-tiny": {  # a few-second smoke run of this script (tests), not a measurement
        "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                        "num_hidden_layers": 4},
        "vision_config": {"hidden_size": 96, "intermediate_size": 192, "num_attention_heads": 2,
                          "num_hidden_layers": 4, "patch_size": 16, "image_size": 64},
        "projection_dim": 64,
    },
    "clip-vit-b32": {},  # openai/clip-vit-base-patch32
    "clip-vit-l14": {  # openai/clip-vit-large-patch14
        "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                        "num_hidden_layers": 12},
        "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                          "num_hidden_layers": 24, "patch_size": 14, "image_size": 224},
        "projection_dim": 768,
    },
}


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Peak memory (MB) above the level at entry, sampled in a thread (CPU) or from CUDA stats."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = rss_mb()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_mb() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, rss_mb() - self.base)


class BackboneForward(torch.nn.Module):
    """The bare dual encoder's two feature calls as one module, so it compiles like ReT-2 does."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, pixels: torch.Tensor):
        return (self.backbone.get_text_features(input_ids=ids, attention_mask=mask),
                self.backbone.get_image_features(pixel_values=pixels))


def build_inputs(batch: int, text_tokens: int, image_size: int, vocab: int, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab - 2, (batch, text_tokens), generator=g)
    ids[:, -1] = vocab - 1  # an end-of-text token, as a tokenizer would put it
    mask = torch.ones(batch, text_tokens, dtype=torch.long)
    pixels = torch.randn(batch, 3, image_size, image_size, generator=g)
    return ids.to(device), mask.to(device), pixels.to(device=device, dtype=dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="clip-vit-b32",
                        help="backbone sizes (random weights); default CLIP ViT-B/32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--text-tokens", type=int, default=77, help="tokens per text (77 = CLIP's budget)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--reference-hidden", type=int, default=1024,
                        help="width of the reference cell (default: ReT-1's 1024)")
    parser.add_argument("--compile", choices=["default", "reduce-overhead", "max-autotune"],
                        help="also time the backbone and ReT-2 compiled with this torch.compile mode")
    parser.add_argument("--variants", nargs="*", choices=["ret2-all-layers", "reference", "ret-late-interaction"],
                        default=["ret2-all-layers", "reference", "ret-late-interaction"],
                        help="the optional eager variants to run besides backbone and ret2")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args(argv)

    import transformers
    from transformers import CLIPConfig, CLIPModel

    from ret2vqa.devices import resolve_dtype
    from retriever import ReT2Config, ReT2Model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    backbone_config = CLIPConfig(**BACKBONES[args.backbone])
    torch.manual_seed(0)
    backbone = CLIPModel(backbone_config).to(device=device, dtype=dtype).eval()
    n_layers = backbone_config.text_config.num_hidden_layers
    n_vision = backbone_config.vision_config.num_hidden_layers
    all_vision = [round(i * (n_vision - 1) / (n_layers - 1)) for i in range(n_layers)]  # one per text layer
    models = {"ret2": ReT2Model(ReT2Config(backbone_config=backbone_config))}
    if "ret2-all-layers" in args.variants:
        models["ret2-all-layers"] = ReT2Model(ReT2Config(backbone_config=backbone_config,
                                                         text_layers=list(range(n_layers)), vision_layers=all_vision))
    if "reference" in args.variants:
        models[f"ret2-hidden{args.reference_hidden}"] = ReT2Model(
            ReT2Config(backbone_config=backbone_config, hidden_size=args.reference_hidden))
    if "ret-late-interaction" in args.variants:  # the released ReT-1 layout: all layers, 1024 wide, 32 x 128
        models["ret-late-interaction"] = ReT2Model(ReT2Config(
            backbone_config=backbone_config, text_layers=list(range(n_layers)), vision_layers=all_vision,
            hidden_size=args.reference_hidden, embedding_dim=128, late_interaction=True,
            share_query_passage_models=False))
    for model in models.values():
        model.load_backbone_weights(backbone)  # identical towers everywhere
        model.to(device=device, dtype=dtype).eval()

    ids, mask, pixels = build_inputs(args.batch_size, args.text_tokens, backbone_config.vision_config.image_size,
                                     backbone_config.text_config.vocab_size, device, dtype)

    def run_backbone():
        backbone.get_text_features(input_ids=ids, attention_mask=mask)
        backbone.get_image_features(pixel_values=pixels)

    def runner(model):
        return lambda: model(input_ids=ids, attention_mask=mask, pixel_values=pixels, side="document")

    variants = {"backbone": run_backbone, **{name: runner(m) for name, m in models.items()}}
    if args.compile:
        mode = None if args.compile == "default" else args.compile
        compiled_backbone = torch.compile(BackboneForward(backbone), mode=mode)
        compiled_ret2 = torch.compile(models["ret2"], mode=mode)
        variants["backbone+compile"] = lambda: compiled_backbone(ids, mask, pixels)
        variants["ret2+compile"] = runner(compiled_ret2)
    baseline_of = {name: "backbone+compile" if name.endswith("+compile") else "backbone" for name in variants}

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    times = {name: [] for name in variants}
    peaks = {}
    compile_s = {}
    with torch.inference_mode():
        for name, fn in variants.items():  # warm-up, and the memory high-water mark of one forward
            if name.endswith("+compile"):  # the first calls compile (and record CUDA graphs)
                start = time.perf_counter()
                for _ in range(3):
                    fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                compile_s[name] = round(time.perf_counter() - start, 1)
            with PeakMemory(device) as mem:
                fn()
            peaks[name] = mem.peak
        order = list(variants)
        shuffler = random.Random(0)
        for _ in range(args.rounds):
            shuffler.shuffle(order)
            for name in order:
                times[name].append(timed(variants[name]))

    median = {name: statistics.median(ts) for name, ts in times.items()}
    base = median["backbone"]
    # Like with like: a compiled variant against the compiled backbone, an eager one against the eager.
    ratio = {name: median[name] / median[baseline_of[name]] for name in variants}
    params = {"backbone": sum(p.numel() for p in backbone.parameters())}
    params.update({name: sum(p.numel() for p in m.parameters()) for name, m in models.items()})
    params["backbone+compile"], params["ret2+compile"] = params["backbone"], params["ret2"]
    rows = [
        {"variant": name, "ms": round(median[name], 1), "ratio": round(ratio[name], 3),
         "peak_mem_mb": round(peaks[name], 1), "params_m": round(params[name] / 1e6, 1),
         "steps": models[name.removesuffix("+compile")].config.num_steps
         if name.removesuffix("+compile") in models else None}
        for name in variants
    ]
    result = {
        "backbone_ms": round(base, 1),
        "ret2_ms": round(median["ret2"], 1),
        "ratio": round(ratio["ret2"], 3),
        "all_layers_ratio": round(ratio["ret2-all-layers"], 3) if "ret2-all-layers" in ratio else None,
        "late_interaction_ratio": round(ratio["ret-late-interaction"], 3) if "ret-late-interaction" in ratio else None,
        "peak_mem_mb": round(peaks["ret2"], 1),
        "backbone_peak_mem_mb": round(peaks["backbone"], 1),
        "compiled_ratio": round(ratio["ret2+compile"], 3) if args.compile else None,
        "compiled_backbone_ms": round(median["backbone+compile"], 1) if args.compile else None,
        "compiled_ret2_ms": round(median["ret2+compile"], 1) if args.compile else None,
        "compile_s": compile_s,
        "setting": {"backbone": f"{args.backbone} (random weights)", "batch_size": args.batch_size,
                    "text_tokens": args.text_tokens, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                    "threads": torch.get_num_threads(), "rounds": args.rounds, "compile": args.compile,
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "python": platform.python_version()},
                    "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
                    "cell": {k: models["ret2"].config.to_dict()[k] for k in
                             ("hidden_size", "num_state_tokens", "num_attention_heads", "intermediate_size",
                              "embedding_dim", "text_layers", "vision_layers")}},
        "variants": rows,
        "rounds_ms": {name: [round(t, 1) for t in ts] for name, ts in times.items()},
    }
    header = f"{'variant':<20} {'steps':>5} {'ms/batch':>9} {'x backbone':>10} {'peak MB':>8} {'params M':>8}"
    if args.compile:
        print("(a +compile variant's ratio is to backbone+compile: like with like)")
    print(f"{args.backbone}: {args.batch_size} image+text items, {args.text_tokens} text tokens, {device} {dtype}, "
          f"{torch.get_num_threads()} threads, medians of {args.rounds} rounds in shuffled order")
    print(header)
    print("-" * len(header))
    for r in rows:
        steps = "" if r["steps"] is None else r["steps"]
        print(f"{r['variant']:<20} {steps:>5} {r['ms']:>9.1f} {r['ratio']:>10.3f} {r['peak_mem_mb']:>8.1f} "
              f"{r['params_m']:>8.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
