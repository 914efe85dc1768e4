"""Turning a validating row iterator into a cached ``datasets.Dataset`` without losing its error report.

``Dataset.from_generator`` caches the generated Arrow table; on the second call the
generator does not run at all, so malformed rows skipped the first time would vanish
silently from the report. :func:`dataset_from_rows` therefore keys the cache on the
source file's identity (path, size, mtime) and keeps a small JSON *sidecar* next to
the cache with the malformed-row report of the run that built it. Every call, cached
or not, replays that report into the caller's :class:`~ret2vqa.io.MalformedRows`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ret2vqa.errors import MissingFileError
from ret2vqa.io import MalformedRows, RowError

_REPORT_VERSION = 1


def list_of(feature: Any) -> Any:
    """A variable-length list feature (``datasets.List`` on datasets>=4, ``Sequence`` before)."""
    try:
        from datasets import List
    except ImportError:  # datasets 3.x
        from datasets import Sequence as List
    return List(feature)


def _stamp(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _fingerprint(kind: str, sources: list[str | Path], options: dict[str, Any]) -> str:
    import ret2vqa

    payload = json.dumps(
        {
            "kind": kind,
            "sources": [_stamp(s) for s in sources],
            "options": options,
            "version": ret2vqa.__version__,
            "r": _REPORT_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass
class _RecordingRows(MalformedRows):
    """A collector that also keeps structured copies of what it reports, to be replayed later."""

    structured: list[dict[str, Any]] = field(default_factory=list)

    def report(self, path: str | Path, line: int | None, message: str) -> None:
        super().report(path, line, message)
        if len(self.structured) < self.max_kept:
            self.structured.append({"path": str(path), "line": line, "message": message})


def _generate(
    row_fn: Callable[..., Iterator[dict[str, Any]]], row_kwargs: dict[str, Any], strict: bool, report_path: str
) -> Iterator[dict[str, Any]]:
    """Run ``row_fn`` with a fresh collector, then write the collector's report to ``report_path``."""
    errors = _RecordingRows(strict=strict)
    yield from row_fn(errors=errors, **row_kwargs)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{report_path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"count": errors.count, "examples": errors.structured}, fh)
    os.replace(tmp, report_path)


def dataset_from_rows(
    row_fn: Callable[..., Iterator[dict[str, Any]]],
    *,
    source: str | Path,
    extra_sources: list[str | Path] = (),
    row_kwargs: dict[str, Any],
    features: Any,
    errors: MalformedRows | None = None,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
):
    """Build a ``datasets.Dataset`` from ``row_fn(errors=..., **row_kwargs)`` reading ``source``.

    ``row_fn`` must be a module-level generator function yielding dicts matching
    ``features``. The cache is keyed on the identity (path, size, mtime) of ``source``
    and ``extra_sources`` (side files the rows are joined with) plus ``row_kwargs``. ``errors`` (strict when ``None``) receives every malformed row,
    including on cache hits. Strict mode raises the first :class:`RowError` itself
    rather than ``datasets``' wrapper exception.
    """
    import datasets
    from datasets.exceptions import DatasetGenerationError

    errors = errors if errors is not None else MalformedRows(strict=True)
    fingerprint = _fingerprint(
        f"{row_fn.__module__}.{row_fn.__qualname__}", [source, *extra_sources], {**row_kwargs, "strict": errors.strict}
    )
    base = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
    report_path = str(base / "ret2vqa_malformed_reports" / f"{fingerprint}.json")
    try:
        ds = datasets.Dataset.from_generator(
            _generate,
            features=features,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            keep_in_memory=keep_in_memory,
            gen_kwargs={
                "row_fn": row_fn,
                "row_kwargs": row_kwargs,
                "strict": errors.strict,
                "report_path": report_path,
            },
            fingerprint=fingerprint,
        )
    except DatasetGenerationError as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, (RowError, FileNotFoundError)):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise
    _replay_report(report_path, errors)
    return ds


def _replay_report(report_path: str, errors: MalformedRows) -> None:
    try:
        with open(report_path, encoding="utf-8") as fh:
            report = json.load(fh)
    except FileNotFoundError:
        raise RuntimeError(
            f"the malformed-row report {report_path} of this cached dataset is missing; "
            "delete the dataset cache (or pass a fresh cache_dir) to rebuild it"
        ) from None
    for example in report["examples"]:
        errors.report(example["path"], example["line"], example["message"])
    errors.count += report["count"] - len(report["examples"])
