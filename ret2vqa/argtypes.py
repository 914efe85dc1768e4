"""Checked ``argparse`` types for numeric flags: a bad value is refused while the command line is parsed.

Every command uses these instead of a bare ``type=int``, so ``-k -2``, ``--limit -1`` or
``--hnsw-ef -3`` fail before any model or store is touched, with argparse's own one-line
error naming the command and the flag (``error: ret2vqa search: argument --hnsw-ef: must be >= 1,
got -3``, exit status 2; see ``rag.cli.CommandLineParser``),
instead of running with a meaningless value or a traceback from deep inside a library::

    parser.add_argument("--limit", type=int_arg(min=0), metavar="N")
"""

from __future__ import annotations

import argparse
from typing import Callable

# Beyond this a count or size is a typo (and Qdrant's u64/usize arguments overflow).
MAX_INT = 2**31 - 1


def _in_range(value: float, min: float | None, max: float | None) -> None:
    """Refuse ``value`` outside ``[min, max]`` (``None``: unbounded) with argparse's error type."""
    if min is not None and value < min:
        raise argparse.ArgumentTypeError(f"must be >= {min}, got {value}")
    if max is not None and value > max:
        raise argparse.ArgumentTypeError(f"must be <= {max}, got {value}")


def int_arg(min: int | None = None, max: int | None = MAX_INT) -> Callable[[str], int]:
    """An argparse ``type`` accepting an integer in ``[min, max]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        _in_range(value, min, max)
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def float_arg(min: float | None = None, max: float | None = None) -> Callable[[str], float]:
    """An argparse ``type`` accepting a finite number in ``[min, max]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        _in_range(value, min, max)
        return value

    parse.__name__ = "number"
    return parse


def int_list_arg(min: int | None = 1) -> Callable[[str], list[int]]:
    """An argparse ``type`` for comma-separated integers (``"1,5,10"``), each ``>= min``."""
    one = int_arg(min=min)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        return [one(p) for p in parts]

    parse.__name__ = "integer list"
    return parse


__all__ = ["MAX_INT", "float_arg", "int_arg", "int_list_arg"]
