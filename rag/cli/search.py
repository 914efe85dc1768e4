"""``ret2vqa search``: embed an image and/or a question with ReT-2 and list the nearest passages.

::

    ret2vqa search --store data/qdrant --collection evqa --image photo.jpg --text "When was it built?" -k 10
    ret2vqa search --config configs/index/evqa-2m.yaml --text "red panda diet" --filter wikidata_id=Q42 --json

Without ``--config`` the query is embedded with the encoder recorded in the
collection's metadata (the one that embedded the passages); with a config whose
``encoder`` section names another encoder, the mismatch is refused. Output: a ranked
table (rank, score, passage id, title, text) or, with ``--json``, an object with the
query and a list of hits ``{"id", "score", "point_id", "payload"}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any

from ret2vqa.argtypes import int_arg
from ret2vqa.errors import ConfigError

from .index import add_store_arguments, load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="retrieve the passages nearest to an image and/or question",
        description="Embed a query (image, text, or both) with ReT-2 and print the top-k passages of a collection.",
    )
    parser.add_argument("--config", metavar="CONFIG", help="YAML with store (and optionally encoder) sections")
    add_store_arguments(parser)
    parser.add_argument("--image", metavar="IMG", help="query image file")
    parser.add_argument("--text", metavar="TEXT", help="query text (a question)")
    parser.add_argument("-k", "--top-k", dest="k", type=int_arg(min=1), default=10, help="number of passages (default 10)")
    parser.add_argument(
        "--filter", action="append", default=[], metavar="FIELD=VALUE",
        help="payload filter; repeat a field to accept any of several values (e.g. --filter wikidata_id=Q42)",
    )
    parser.add_argument("--instruction", help="query instruction (default: the encoder's; '' for none)")
    parser.add_argument("--hnsw-ef", type=int_arg(min=1), metavar="N", help="HNSW search breadth (default: store.hnsw.hnsw_ef)")
    parser.add_argument("--exact", action="store_true", help="exact (brute-force) search instead of HNSW")
    parser.add_argument("--device", help="encoder device (default: GPU if available)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run_search)


def parse_filter_args(items: list[str]) -> dict[str, Any] | None:
    """``["wikidata_id=Q42", "section_index=0"]`` -> ``{"wikidata_id": "Q42", "section_index": 0}``.

    Integer-looking values become integers (quote them to keep a string: ``code="007"``);
    a field given several times matches any of its values.
    """
    out: dict[str, Any] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ConfigError(f"expected FIELD=VALUE, got {item!r}", "--filter")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            parsed: Any = value[1:-1]
        else:
            parsed = int(value) if value.lstrip("-").isdigit() else value
        if field in out:
            previous = out[field] if isinstance(out[field], list) else [out[field]]
            out[field] = [*previous, parsed]
        else:
            out[field] = parsed
    return out or None


def run_search(args: argparse.Namespace) -> int:
    from rag.components import open_collection
    from rag.store import point_id

    if not args.image and not args.text:
        raise ConfigError("give a query: --image IMG and/or --text TEXT")
    if args.k < 1:
        raise ConfigError(f"must be >= 1, got {args.k}", "-k")
    filters = parse_filter_args(args.filter)
    config = load_config(args, **{"encoder.device": args.device})
    store, encoder = open_collection(config)  # the configured encoder, checked; else the collection's own
    with store:
        vector = encoder.encode_queries([args.text or ""], images=[args.image], instruction=args.instruction)[0]
        hits = store.search(vector, k=args.k, filter=filters, hnsw_ef=args.hnsw_ef, exact=args.exact)
    if args.json:
        out = {
            "query": {"text": args.text, "image": args.image, "filter": filters, "k": args.k},
            "collection": config.store.describe(),
            "hits": [{"id": h.id, "score": h.score, "point_id": point_id(h.id), "payload": h.payload} for h in hits],
        }
        print(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        print(format_hits(hits))
    return 0


def format_hits(hits: list[Any]) -> str:
    """A ranked table sized to the terminal: rank, score, passage id, title, text."""
    if not hits:
        return "no passages found"
    width = shutil.get_terminal_size((120, 20)).columns
    id_w = min(max(len(h.id) for h in hits), 48)
    title_w = min(max(len(str(h.payload.get("title", ""))) for h in hits), 28)
    head = f"{'rank':>4}  {'score':>6}  {'passage':<{id_w}}  {'title':<{title_w}}  text"
    text_w = max(20, width - len(head) + 4)
    lines = [head, "-" * min(width, len(head) + text_w - 4)]
    for rank, h in enumerate(hits, 1):
        text = " ".join(str(h.payload.get("text", "")).split())
        text = text if len(text) <= text_w else text[: text_w - 1] + "…"
        pid = h.id if len(h.id) <= id_w else "…" + h.id[-(id_w - 1):]
        title = str(h.payload.get("title", ""))[:title_w]
        lines.append(f"{rank:>4}  {h.score:>6.3f}  {pid:<{id_w}}  {title:<{title_w}}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``search`` on its own (``python -m rag.cli.search ...``, e.g. under ``accelerate launch``)."""
    from rag.cli import main as ret2vqa_main

    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a in ("--debug", "-v", "--verbose")]
    return ret2vqa_main([*flags, "search", *(a for a in argv if a not in flags)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
