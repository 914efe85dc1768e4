"""``ret2vqa train``: contrastive training of the ReT-2 encoder from a YAML config."""

from __future__ import annotations

import argparse
import json

from ret2vqa.argtypes import int_arg


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
    parser.add_argument("--max-steps", type=int_arg(min=1), help="override max_steps")
    parser.add_argument("--batch-size", type=int_arg(min=1), help="override the per-process batch_size")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    parser.add_argument("--strict", action="store_true", help="stop at the first malformed training row")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rag.components import build_training_encoder  # a command may ask the composition root
    from ret2vqa.config import from_yaml, override

    from .training import TrainingConfig, train

    cfg = override(from_yaml(TrainingConfig, args.config), {
        "output_dir": args.output_dir, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "resume": False if args.no_resume else None, "data.strict": True if args.strict else None,
    }, where="command line")
    result = train(cfg, build_training_encoder(cfg.model, seed=cfg.seed))
    print(json.dumps(result, indent=2))
    return 0
