"""``ret2vqa ask``: answer one visual question from the knowledge base, with its sources."""

from __future__ import annotations

import argparse
import json

from ret2vqa.argtypes import int_arg

from .index import add_store_arguments, store_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="answer a question about an image from the indexed knowledge base, with sources",
        description=(
            "Embed the image and question with ReT-2, retrieve the top-k passages from the store and let the "
            "multimodal LLM answer from them. The collection must have been built with the same encoder "
            "(`ret2vqa index build --config ...` or `ret2vqa demo`)."
        ),
    )
    parser.add_argument("--image", help="the photo (omit for a text-only question)")
    parser.add_argument("--question", "-q", required=True, help="the question")
    parser.add_argument("--config", help="pipeline YAML (default: the CPU preset, configs/cpu.yaml)")
    add_store_arguments(parser)
    parser.add_argument("-k", "--k", type=int_arg(min=0), help="passages given to the generator (default: retrieval.k; 0: none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--show-prompt", action="store_true", help="also print the prompt given to the generator")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a question longer than generator.max_question_tokens instead of cutting it")
    parser.set_defaults(func=run)


def format_answer(result, show_prompt: bool = False, limit: int | None = None) -> str:
    """The human-readable form of a :class:`rag.pipeline.PipelineAnswer` (``limit``: passages listed)."""
    lines = [f"Q: {result.question}" + (f"   [image: {result.image}]" if result.image else ""), f"A: {result.answer}"]
    shown = result.passages[:limit] if limit is not None else result.passages
    if shown:
        lines.append(f"Sources (top {len(shown)} of {len(result.passages)} retrieved; "
                     f"{result.passages_used} in the prompt):")
        width = max(len(p.id) for p in shown)
        for rank, p in enumerate(shown, 1):
            title = p.title or (p.text[:60] + ("..." if len(p.text) > 60 else ""))
            where = f"  {p.url}" if p.url else (f"  {p.entity_id}" if p.entity_id else "")
            lines.append(f"  {rank:>2}. {p.score:7.4f}  {p.id:<{width}}  {title}{where}")
    else:
        lines.append("Sources: none (zero-shot)")
    lines.append("Timings: " + ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in result.timings.items()))
    if show_prompt:
        lines += ["Prompt:", result.prompt]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rag.config import load_pipeline_config
    from rag.pipeline import Pipeline

    config = load_pipeline_config(args.config).override({
        **store_overrides(args), "generator.long_question": "error" if args.strict else None,
    })
    with Pipeline.from_config(config) as pipeline:
        result = pipeline.answer(args.question, args.image, k=args.k)
    if args.json:
        print(json.dumps(result.to_dict(with_prompt=args.show_prompt), indent=2, ensure_ascii=False))
    else:
        print(format_answer(result, args.show_prompt))
    return 0
