"""The ``ret2vqa`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed arguments, returning an exit
code). Heavy imports (torch, transformers, qdrant) happen inside ``func`` so that
``ret2vqa --help`` answers instantly. Commands build their components through the
composition root (:mod:`rag.components`).

Errors: a :class:`ret2vqa.errors.UserError` (a missing file, a bad config field or
argument, a model that is not available offline, a malformed row in strict mode, a
locked or incompatible store) is printed as one ``error:`` line with exit status 2
(``--debug`` shows its traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from typing import NoReturn

# Modules providing subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: list[str] = [
    "rag.cli.demo",
    "rag.cli.ask",
    "rag.cli.index",
    "rag.cli.search",
    "rag.cli.serve",
    "eval.cli",
    "retriever.cli",
    "rag.cli.doctor",
    "rag.cli.convert",
]


class CommandLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line, exit status 2.

    argparse's own report (a usage block, then ``prog: error: ...``) buries the one line that
    matters; every other user mistake in ``ret2vqa`` is a single ``error:`` line, so argument
    mistakes are too. Subcommand parsers inherit the class through ``add_subparsers``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="ret2vqa",
        description=(
            "Knowledge-based visual question answering: a ReT-2 multimodal retriever over a Qdrant "
            "knowledge base, answers from a multimodal LLM, and the official E-VQA / InfoSeek metrics."
        ),
        epilog="Run `ret2vqa demo` for a first end-to-end run, `ret2vqa COMMAND --help` for details.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:  # not installed in this build (tests assert all are)
            continue
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from ret2vqa.errors import UserError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
