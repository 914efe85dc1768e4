"""``ret2vqa doctor``: versions, devices, the model cache and which configured models are available."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the installation: versions, CPU/CUDA, bitsandbytes, cache, which models are available",
        description=(
            "Print package versions, the compute devices (CPU threads, CUDA GPUs, bitsandbytes), the Hugging Face "
            "cache location and offline mode, and for the presets in configs/ (cpu, gpu, tiny) and any --config "
            "whether each model they name can be loaded without a download."
        ),
    )
    parser.add_argument("--config", action="append", default=[], help="also check this pipeline YAML (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rag.config import PipelineConfig, default_config_path
    from rag.diagnostics import report

    configs = {}
    for name in ("cpu", "gpu", "tiny"):
        path = default_config_path(name)
        if path.is_file():
            configs[f"preset {name} ({path.name})"] = PipelineConfig.from_yaml(path)
    for path in args.config:
        configs[path] = PipelineConfig.from_yaml(path)
    data = report(configs)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print("Packages")
    for name, version in data["versions"].items():
        print(f"  {name:<16} {version or 'not installed'}")
    dev = data["devices"]
    print("Devices")
    print(f"  CPU threads      {dev['cpu_threads']}")
    print(f"  CUDA             {'yes' if dev['cuda'] else 'no'}")
    for gpu in dev["gpus"]:
        print(f"    cuda:{gpu['index']}  {gpu['name']}  {gpu['memory_gib']} GiB  bf16={gpu['bf16']}")
    print(f"  bitsandbytes     {dev['bitsandbytes']}")
    cache = data["cache"]
    print("Model cache")
    print(f"  HF hub cache     {cache['hf_hub_cache']}")
    print(f"  offline mode     {'on (HF_HUB_OFFLINE)' if cache['offline'] else 'off'}")
    print(f"  ret2vqa cache    {cache['ret2vqa_cache']}")
    print("Models")
    for config_name, statuses in data["models"].items():
        print(f"  {config_name}")
        for s in statuses:
            state = "available" if s["available"] else "MISSING"
            where = f"  {s['location']}" if s["location"] else ""
            print(f"    {s['role']:<10} {state:<10} {s['name_or_path']} [{s['kind']}]{where}")
    print("Released ReT checkpoints (loaded directly, converted once into the ret2vqa cache)")
    for c in data["released_checkpoints"]:
        state = "available" if c["available"] else "not cached"
        print(f"  {c['name_or_path']:<34} {state:<10} towers {c['base_model']}  preset {c['config']}")
    return 0
