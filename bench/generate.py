"""Generator throughput: answers/s and generated tokens/s at batch sizes 1, 8 and 32.

Each question comes with one image and k=5 retrieved passages (about 100 words each),
prompted exactly as the pipeline prompts them (:meth:`generator.MultimodalGenerator.build_prompt`,
the family's processor, left padding), and generates ``--new-tokens`` tokens (the
minimum is set to the maximum, so random weights cannot stop early and every
configuration does the same work). Families are those of the presets:

* ``qwen2_5_vl``: Qwen2.5-VL-7B-Instruct (``configs/gpu.yaml``, ``configs/generator/qwen2.5-vl-7b-4bit.yaml``);
* ``smolvlm``: SmolVLM-256M-Instruct (``configs/cpu.yaml``);
* ``llava``: LLaVA-1.5-7B (``configs/generator/llava-1.5-7b-8bit.yaml``);
* ``llava_onevision``: LLaVA-OneVision-Qwen2-7B.

``--sizes tiny`` (default on CPU) builds the tiny random models of :mod:`rag.tiny_models`;
``--sizes real`` (default on CUDA) the same architectures with the public checkpoints'
widths, depths, vocabularies and image resolutions (random weights from the real config
classes: nothing is downloaded). Precisions: ``bf16`` and ``4bit`` (NF4 through
bitsandbytes; only with CUDA and bitsandbytes, else the row says why it was skipped).
Times are medians of ``--rounds`` after a warm-up batch.

    python bench/generate.py --json OUT.json                                   # tiny, CPU
    python bench/generate.py --sizes real --families qwen2_5_vl --json OUT.json  # on a GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAMILIES = ("qwen2_5_vl", "smolvlm", "llava", "llava_onevision")
K = 5

# The public checkpoints' sizes (their config.json), applied to the tiny models' config classes.
REAL = {
    "qwen2_5_vl": {  # Qwen/Qwen2.5-VL-7B-Instruct
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31]),
        "image": dict(patch_size=14, merge_size=2, min_pixels=3136, max_pixels=448 * 448),
        "image_px": 448,
    },
    "smolvlm": {  # HuggingFaceTB/SmolVLM-256M-Instruct
        "text": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=49280),
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=512, patch_size=16),
        "scale_factor": 4,
        "image": dict(size={"longest_edge": 512}, max_image_size={"longest_edge": 512}, do_image_splitting=False),
        "image_seq_len": 64,
        "image_px": 512,
    },
    "llava": {  # llava-hf/llava-1.5-7b-hf
        "text": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32064),
        "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=336, patch_size=14, projection_dim=768),
        "image": dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        "patch_size": 14,
        "image_px": 336,
    },
    "llava_onevision": {  # llava-hf/llava-onevision-qwen2-7b-ov-hf (one 384-pixel tile per image here)
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152128),
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                       image_size=384, patch_size=14),
        "image": dict(size={"height": 384, "width": 384}, image_grid_pinpoints=[[384, 384]]),
        "grid": [[384, 384]],
        "num_image_tokens": 729,
        "image_px": 384,
    },
}

WORDS = ("museum bridge river painting built century king city station cathedral garden mountain lake island "
         "festival treaty author novel species bird flower located famous designed opened rebuilt named").split()


def real_model(family: str, dtype: Any, max_layers: int | None = None):
    """The family's model at the public checkpoint's sizes (random weights) and a processor for it;
    ``max_layers`` caps the depth of both towers (to check the plumbing on a small machine)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from rag import tiny_models

    spec = tiny_models._family(family)
    tok = tiny_models._tokenizer(family)
    config, processor = spec.build(tok, spec.chat_template)
    real = REAL[family]
    text = config.text_config
    for key, value in real["text"].items():
        setattr(text, key, value)
    for key, value in real["vision"].items():
        setattr(config.vision_config, key, value)
    # A new image processor of the same class at the checkpoint's resolution (the tiny one's is 16-32 px).
    image_kwargs = dict(real["image"])
    if family == "qwen2_5_vl":
        image_kwargs["temporal_patch_size"] = 2
    processor.image_processor = type(processor.image_processor)(**image_kwargs)
    if max_layers:
        text.num_hidden_layers = min(text.num_hidden_layers, max_layers)
        vision = config.vision_config
        if hasattr(vision, "depth"):  # Qwen2.5-VL: keep a full-attention block among the kept ones
            vision.depth = min(vision.depth, max_layers)
            vision.fullatt_block_indexes = [i for i in vision.fullatt_block_indexes if i < vision.depth] or [0]
        else:
            vision.num_hidden_layers = min(vision.num_hidden_layers, max_layers)
    if family == "qwen2_5_vl":
        config.vision_config.out_hidden_size = text.hidden_size
    elif family == "smolvlm":
        config.scale_factor = real["scale_factor"]
        processor.image_seq_len = real["image_seq_len"]
    elif family == "llava":
        processor.patch_size = real["patch_size"]
        config.image_seq_length = (336 // 14) ** 2
    else:
        config.image_grid_pinpoints = real["grid"]
        processor.num_image_tokens = real["num_image_tokens"]
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids(spec.eos)
    model.generation_config.pad_token_id = tok.convert_tokens_to_ids(spec.pad)
    return model, processor


def why_no_4bit() -> str | None:
    """Why 4-bit cannot run here (``None``: it can)."""
    import torch

    if not torch.cuda.is_available():
        return "4-bit needs CUDA"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    return None


def quantize_4bit(model: Any, dtype: Any) -> Any:
    """Swap the language model's linear layers for bitsandbytes NF4 ones (what ``load_in_4bit``
    does at load time; random weights have no checkpoint to load through it)."""
    import bitsandbytes as bnb
    import torch

    def swap(parent: torch.nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Linear) and "lm_head" not in name:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=dtype, quant_type="nf4", device="meta")
                # Quantized where the weight already is (moving a 16-bit 7B model through host memory is slow).
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q.to("cuda"))
            else:
                swap(child)

    language = getattr(model, "language_model", None) or model.model.language_model
    swap(language)
    return model


def questions(n: int, image_px: int, seed: int = 0) -> list[tuple[str, Any, list]]:
    """``n`` (question, image, k passages) triples: one photo-sized image and 5 passages each."""
    import numpy as np
    from PIL import Image

    from ret2vqa.passage import Passage

    rng = random.Random(seed)
    out = []
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 255, (image_px, image_px, 3), dtype=np.uint8)
        passages = [Passage(id=f"p{i}-{j}", title=rng.choice(WORDS).title(),
                            text=" ".join(rng.choice(WORDS) for _ in range(100))) for j in range(K)]
        out.append((f"Which year was the {rng.choice(WORDS)} in this picture {rng.choice(WORDS)}?",
                    Image.fromarray(pixels), passages))
    return out


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--sizes", choices=["tiny", "real"], default="real" if on_gpu else "tiny")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precisions", nargs="+", choices=["bf16", "4bit"], default=["bf16", "4bit"])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-layers", type=int, help="cap both towers' depth (--sizes real on a small machine)")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args(argv)

    import transformers

    from generator import GeneratorConfig, MultimodalGenerator
    from rag import tiny_models

    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16
    rows = []
    for family in args.families:
        missing = tiny_models.missing_requirements(family)
        for precision in args.precisions:
            row: dict[str, Any] = {"family": family, "sizes": args.sizes, "precision": precision}
            why = f"needs {', '.join(missing)}" if missing else why_no_4bit() if precision == "4bit" else None
            if why:
                rows.append({**row, "skipped": why})
                continue
            if args.sizes == "real":
                model, processor = real_model(family, dtype, args.max_layers)
            else:
                model, processor = tiny_models.build_tiny_generator_model(family)
                model = model.to(device=device, dtype=dtype)
            if precision == "4bit":
                model = quantize_4bit(model, dtype)
            config = GeneratorConfig(model=f"bench:{family}", dtype="bfloat16", device_map=str(device),
                                     max_new_tokens=args.new_tokens)
            gen = MultimodalGenerator(model, processor, config)
            gen.generation_config.min_new_tokens = args.new_tokens  # same work whatever random weights say
            image_px = REAL[family]["image_px"] if args.sizes == "real" else 32
            pool = questions(max(args.batch_sizes), image_px)
            built = [gen.build_prompt(q, im, ps) for q, im, ps in pool]
            row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
            row["prompt_tokens"] = round(statistics.mean(b.num_tokens for b in built), 1)
            for batch_size in args.batch_sizes:
                prompts = built[:batch_size]

                def run() -> float:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    gen._generate_batch(prompts)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    return time.perf_counter() - start

                run()  # warm-up
                seconds = statistics.median(run() for _ in range(args.rounds))
                rows.append({**row, "batch_size": batch_size, "seconds": round(seconds, 3),
                             "answers_per_s": round(batch_size / seconds, 2),
                             "tokens_per_s": round(batch_size * args.new_tokens / seconds, 1)})
                print(f"{family:<16} {precision:<5} batch {batch_size:>3}: {batch_size / seconds:8.2f} answers/s "
                      f"{batch_size * args.new_tokens / seconds:9.1f} tokens/s", flush=True)
            gen = model = None  # free the weights before the next family
            if device.type == "cuda":
                torch.cuda.empty_cache()
    for row in rows:
        if "skipped" in row:
            print(f"{row['family']:<16} {row['precision']:<5} skipped: {row['skipped']}")
    result = {
        "rows": rows,
        "setting": {"sizes": args.sizes, "max_layers": args.max_layers, "k": K, "images_per_question": 1, "new_tokens": args.new_tokens,
                    "rounds": args.rounds, "device": str(device), "dtype": "bfloat16",
                    "threads": torch.get_num_threads(),
                    "machine": {"cpus": os.cpu_count(), "arch": platform.machine(),
                                "gpu": torch.cuda.get_device_name(device) if on_gpu else None},
                    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "python": platform.python_version()}},
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
