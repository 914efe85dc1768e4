"""``ret2vqa train``: contrastive training of the ReT-2 encoder from a YAML config."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the ReT-2 retriever (contrastive InfoNCE, accelerate)",
        description=(
            "Train ReT-2 with symmetric InfoNCE over in-batch negatives. Single process: "
            "`ret2vqa train --config C.yaml`; several GPUs or nodes: "
            "`accelerate launch -m rag.cli train --config C.yaml`. The run resumes from the last "
            "checkpoint in output_dir unless --no-resume. See configs/train/ for examples."
        ),
    )
    parser.add_argument("--config", required=True, help="training YAML (see configs/train/)")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    parser.add_argument("--batch-size", type=int, help="override the per-process batch_size")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    parser.add_argument("--strict", action="store_true", help="stop at the first malformed training row")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ret2vqa.config import from_dict, load_yaml

    from .training import TrainingConfig, train

    data = load_yaml(args.config)
    overrides = {"output_dir": args.output_dir, "max_steps": args.max_steps, "batch_size": args.batch_size}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_resume:
        data["resume"] = False
    if args.strict:
        data.setdefault("data", {})["strict"] = True
    cfg = from_dict(TrainingConfig, data, where=str(args.config))
    result = train(cfg)
    print(json.dumps(result, indent=2))
    return 0
