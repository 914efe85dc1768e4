"""Lazy package exports: names that need torch / transformers are imported on first use.

``import generator`` or ``from retriever import EncoderConfig`` must stay instant (the
command line parses its arguments, and configs are read, before any model is needed).
A package lists its heavy names with the module that defines each, and installs the
module-level ``__getattr__`` this returns (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` resolving ``name`` from ``exports[name]`` (a module path)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value  # later look-ups skip this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
