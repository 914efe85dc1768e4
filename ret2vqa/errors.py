"""The errors a user can fix, in one hierarchy.

The command line prints a :class:`UserError` as one ``error:`` line (exit status 2) and
lets anything else through with its traceback: a ``KeyError`` raised by a bug inside
the pipeline must look like a bug, not like a typo in the user's config. So every
error that means "change your input" is raised as one of these classes, and nothing
is recognised by searching its message.

Each class also derives from the built-in exception it refines (``ValueError``,
``FileNotFoundError``, ``RuntimeError``), so library callers that catch those keep
working.

=============================  =============================================================
class                          raised when
=============================  =============================================================
:class:`ConfigError`           a config value or command-line argument is missing, unknown or
                               out of range (the message names the file and dotted field)
:class:`MissingFileError`      an input file or directory named by the user does not exist
:class:`InputError`            input data is unusable: :class:`RowError` (a malformed row in
                               strict mode, with file and line), :class:`ImageError` (an image
                               that cannot be decoded), ``retriever.ItemError`` (an item to
                               encode)
``ModelUnavailableError``      a model is neither local, cached nor downloadable
                               (:mod:`ret2vqa.hub`, whose message says how to fetch it)
:class:`StoreError`            the vector store refuses: :class:`StoreLockedError`,
                               :class:`CollectionNotFoundError`, :class:`CollectionMismatchError`,
                               :class:`CollectionDamagedError` (its files are damaged)
=============================  =============================================================
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """Something the user can fix: the CLI prints the message as one line, without a traceback."""


class ConfigError(UserError, ValueError):
    """A configuration value (or command-line argument) is missing, unknown, mistyped or out of range.

    ``field`` names the offending field relative to the dataclass that raised it; the
    config reader prefixes the file and the section, so the final message reads
    ``configs/cpu.yaml: store.hnsw.m: must be >= 4, got 2``.
    """

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, where: str, nested: bool = False) -> "ConfigError":
        """The same error located under ``where`` (see :func:`locate`)."""
        if not where:
            return self
        if self.field:
            return ConfigError(self.message, locate(where, self.field, nested))
        return ConfigError(f"{where}: {self.message}")


def locate(where: str, field: str, nested: bool = False) -> str:
    """``field`` under ``where``, which is a source (a file, "command line"), a source and a
    section path (``"cfg.yaml: store"``), or, with ``nested``, a bare section path.

    ``"cfg.yaml"`` + ``"store"`` -> ``"cfg.yaml: store"``; ``"cfg.yaml: store"`` + ``"path"``
    -> ``"cfg.yaml: store.path"``; ``"generator"`` (a section) + ``"prompt"`` ->
    ``"generator.prompt"``; ``""`` + ``"store"`` -> ``"store"``.
    """
    if not where:
        return field
    return f"{where}.{field}" if nested or ": " in where else f"{where}: {field}"


class MissingFileError(UserError, FileNotFoundError):
    """An input file or directory the user named does not exist."""

    def __init__(self, path: str | os.PathLike, what: str = "file"):
        self.path = str(path)
        super().__init__(f"{what} not found: {Path(path)}")


class InputError(UserError, ValueError):
    """Input data cannot be used as it is (the message says which file, line or item)."""


class RowError(InputError):
    """A malformed input row. ``str(err)`` starts with ``file:line``."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ImageError(InputError):
    """An image that cannot be decoded (or is refused, e.g. a decompression bomb)."""


class StoreError(UserError, RuntimeError):
    """A vector-store operation failed for a reason the user can act on."""


class StoreLockedError(StoreError):
    """An embedded collection is open in another process (or already open in this one)."""

    def __init__(self, what: str, holder_pid: int | None):
        self.holder_pid = holder_pid
        if holder_pid is not None and holder_pid == os.getpid():
            message = (f"{what} is already open in this process (pid {holder_pid}); use the open "
                       f"store, or close it first")
        else:
            who = f"pid {holder_pid}" if holder_pid is not None else "an unknown pid"
            message = f"{what} is in use by another process ({who}); wait for it to finish or stop it"
        super().__init__(message)


class CollectionNotFoundError(StoreError, FileNotFoundError):
    """The collection does not exist (and was not asked to be created)."""


class CollectionMismatchError(StoreError, ValueError):
    """The collection was built with another encoder, dimension or distance."""


class CollectionDamagedError(StoreError):
    """The collection's files are damaged (a segment deleted, a vector or payload file cut short),
    or it holds fewer points than its indexing progress records. The message names the
    collection and says how to check (``ret2vqa index verify``) and rebuild it."""
