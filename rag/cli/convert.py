"""``ret2vqa convert``: turn a released ReT checkpoint into a ReT-2 checkpoint in our format.

::

    ret2vqa convert aimagelab/ReT-CLIP-ViT-L-14 checkpoints/ret-clip-vit-l-14
    ret2vqa convert ./ReT-CLIP-ViT-L-14 out/ --processor ./clip-vit-large-patch14

SRC is a hub id or a directory holding a released checkpoint (``config.json`` with
``model_type: "retriever"`` and safetensors weights, one file or a shard index). OUT is
a new directory that ``ReT2Encoder.from_pretrained(OUT)`` (and ``encoder.name_or_path``
in a config) loads. ``--processor`` names a local CLIP processor directory to store with
the weights; without it the checkpoint's own processor files are used, else the towers'
base model (offline it must already be cached). Nothing is written to OUT unless the
whole conversion succeeds. The library code is :mod:`retriever.convert`.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released ReT checkpoint (e.g. aimagelab/ReT-CLIP-ViT-L-14) into a ReT-2 checkpoint",
        description=(
            "Convert a released ReT checkpoint (model_type 'retriever': hub id or directory) into a ReT-2 checkpoint "
            "directory OUT in our format (weights, config, processor). Checked completely before OUT is written."
        ),
    )
    parser.add_argument("src", metavar="SRC", help="hub id or directory of the released checkpoint")
    parser.add_argument("out", metavar="OUT", help="new output directory")
    parser.add_argument("--processor", metavar="P",
                        help="local CLIP processor directory (tokenizer + image processor) to store with the weights")
    parser.add_argument("--revision", help="hub revision of SRC")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retriever.configuration_ret2 import ReT2Config
    from retriever.convert import CONVERSION_RECORD, convert_checkpoint

    out = convert_checkpoint(args.src, args.out, processor=args.processor, revision=args.revision)
    config = ReT2Config.from_pretrained(out)
    record = json.loads((out / CONVERSION_RECORD).read_text(encoding="utf-8"))
    summary = {
        "out": str(out), "source": record["source"], "processor": record["processor"],
        "head": "late interaction (MaxSim)" if config.late_interaction else "pooled (one vector)",
        "output_shape": [config.num_state_tokens, config.embedding_dim] if config.late_interaction
        else [config.embedding_dim],
        "cells": "shared" if config.share_query_passage_models else "separate query and document cells",
        "text_layers": config.text_layers, "vision_layers": config.vision_layers,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"converted {summary['source']} -> {out}")
        print(f"  head        {summary['head']}, {tuple(summary['output_shape'])} per item")
        print(f"  cells       {summary['cells']}")
        print(f"  layers      text {config.text_layers}, vision {config.vision_layers}")
        print(f"  processor   {summary['processor']}")
        print(f"  use it as   encoder: {{name_or_path: {out}}}")
    return 0
