"""Reading prediction files: jsonl lines ``{"<id field>": ..., "prediction": "..."}``.

Both official formats put one prediction per line: InfoSeek uses ``data_id``, our
E-VQA format uses ``question_id`` (the 0-based row index in the reference CSV). A
prediction must be a string (the official evaluators crash on anything else); a line
that is not valid is reported with ``file:line``. The same id twice is always an
error: the official InfoSeek script would silently count that question twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from ret2vqa.io import MalformedRows, RowError, iter_jsonl


def iter_prediction_rows(
    path: str | Path,
    id_field: str,
    errors: MalformedRows | None = None,
    parse_id: Callable[[Any], Any] | None = None,
) -> Iterator[tuple[int, Any, str]]:
    """Yield ``(line, id, prediction)``; ``parse_id`` converts/validates the id (ValueError = malformed)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        if id_field not in row:
            errors.report(path, line, f"missing field '{id_field}'")
            continue
        if "prediction" not in row:
            errors.report(path, line, "missing field 'prediction'")
            continue
        prediction = row["prediction"]
        if not isinstance(prediction, str):
            errors.report(
                path, line, f"'prediction' must be a string, got {type(prediction).__name__} {prediction!r}"[:200]
            )
            continue
        try:
            pid = parse_id(row[id_field]) if parse_id else row[id_field]
        except ValueError as exc:
            errors.report(path, line, f"'{id_field}': {exc}")
            continue
        yield line, pid, prediction


def read_predictions(
    path: str | Path,
    id_field: str,
    errors: MalformedRows | None = None,
    parse_id: Callable[[Any], Any] | None = None,
) -> dict[Any, str]:
    """``{id: prediction}`` of a prediction jsonl; a repeated id raises :class:`RowError` naming both lines."""
    seen: dict[Any, int] = {}
    out: dict[Any, str] = {}
    for line, pid, prediction in iter_prediction_rows(path, id_field, errors, parse_id):
        if pid in seen:
            raise RowError(path, line, f"duplicate {id_field} {pid!r} (first at line {seen[pid]})")
        seen[pid] = line
        out[pid] = prediction
    return out


def parse_data_id(value: Any) -> str:
    """InfoSeek ids are strings such as ``infoseek_val_00000000``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def parse_row_index(value: Any) -> int:
    """E-VQA ids are 0-based row indices: an int, or a string of digits."""
    if isinstance(value, bool):
        raise ValueError(f"expected a row index, got {value!r}")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    else:
        raise ValueError(f"expected a 0-based row index (integer), got {value!r}")
    if index < 0:
        raise ValueError(f"row index must be >= 0, got {index}")
    return index
