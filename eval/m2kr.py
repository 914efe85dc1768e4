"""M2KR (PreFLMR's multi-task knowledge retrieval benchmark): the one reader of its files.

Knowledge-base ingestion (``index build --format m2kr``), ReT-2 training
(``data.format: m2kr``) and retrieval evaluation all read M2KR through this module, so
they accept the same rows. Two layouts are in use:

* ReT's jsonl variant (``aimagelab/ReT-M2KR``): queries ``{"data_id", "instruction",
  "question", "image_path", "passage_id" (one id or a list), "answer"}`` and passages
  ``{"passage_id", "passage_text", "passage_image_path"}``;
* the original HF dataset's fields (``BByrneLab/...M2KR``): queries with
  ``pos_item_ids`` / ``answers`` / ``img_path``, passages with ``passage_content``.

Both are read by the same parsers: a passage's text is ``passage_text`` or
``passage_content`` (possibly empty: what to do with an empty passage is the caller's
choice), a query's positives are ``passage_id`` or ``pos_item_ids``.
Ids may be strings or integers (they become strings). A malformed row raises
:class:`ret2vqa.io.RowError` naming file and line, which the ``iter_*`` readers report
to a :class:`~ret2vqa.io.MalformedRows` (fatal in strict mode, else counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ret2vqa.io import MalformedRows, RowError, iter_jsonl

#: Passage fields the parser interprets; any other scalar field is kept in ``extra``.
PASSAGE_FIELDS = frozenset({"passage_id", "passage_text", "passage_content", "passage_image_path"})


def _id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _optional_str(row: dict[str, Any], name: str, path: str | Path, line: int) -> str | None:
    value = row.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RowError(path, line, f"'{name}' must be a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class M2KRPassage:
    """One passage of an M2KR corpus; ``image_path`` as written (relative to the image root)."""

    passage_id: str
    text: str
    image_path: str | None
    line: int
    extra: dict[str, Any] = field(default_factory=dict)  # other scalar fields (e.g. ``title``, ``language``)


def parse_m2kr_passage(row: dict[str, Any], path: str | Path, line: int) -> M2KRPassage:
    """An :class:`M2KRPassage` from one jsonl row; raises :class:`RowError` when it is malformed."""
    pid = _id(row.get("passage_id"))
    if pid is None:
        raise RowError(path, line, f"missing or empty 'passage_id' (got {row.get('passage_id')!r})")
    text = row.get("passage_text", row.get("passage_content"))
    image = _optional_str(row, "passage_image_path", path, line)
    if text is None and image is None:
        raise RowError(path, line, f"passage {pid}: missing 'passage_text' (or 'passage_content')")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise RowError(path, line, f"passage {pid}: 'passage_text' must be a string")
    extra = {k: v for k, v in row.items()
             if k not in PASSAGE_FIELDS and (v is None or isinstance(v, (str, int, float, bool)))}
    return M2KRPassage(pid, text, image, line, extra)


def iter_m2kr_passages(path: str | Path, errors: MalformedRows | None = None,
                       start_line: int = 1) -> Iterator[M2KRPassage]:
    """The passages of an M2KR passages jsonl, in file order (malformed rows reported to ``errors``)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors, start_line=start_line):
        try:
            yield parse_m2kr_passage(row, path, line)
        except RowError as err:
            errors.add(err)


@dataclass(frozen=True)
class M2KRQuery:
    """One M2KR query: its text parts, image, positive passage ids and answers (for pseudo-recall)."""

    data_id: str | None
    instruction: str | None
    question: str | None
    image_path: str | None
    positives: list[str]
    answers: list[str]
    line: int

    @property
    def text(self) -> str | None:
        """``"{instruction} {question}"``, the query text ReT was trained with (the instruction alone if no question)."""
        parts = [p.strip() for p in (self.instruction, self.question) if p and p.strip()]
        return " ".join(parts) or None


def _string_list(value: Any, name: str, path: str | Path, line: int) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = _id(item)
        if text is None:
            raise RowError(path, line, f"'{name}' must hold non-empty strings or integers, got {item!r}")
        out.append(text)
    return out


def parse_m2kr_query(row: dict[str, Any], path: str | Path, line: int) -> M2KRQuery:
    """An :class:`M2KRQuery` from one jsonl row; raises :class:`RowError` when it is malformed."""
    positives = row.get("passage_id", row.get("pos_item_ids"))
    if positives in (None, "", []):
        raise RowError(path, line, "missing positive 'passage_id' (or 'pos_item_ids')")
    answers = row.get("answer", row.get("answers"))
    answers = [] if answers in (None, "") else [str(a) for a in (answers if isinstance(answers, list) else [answers])]
    query = M2KRQuery(
        data_id=_id(row.get("data_id", row.get("question_id"))),
        instruction=_optional_str(row, "instruction", path, line),
        question=_optional_str(row, "question", path, line),
        image_path=_optional_str(row, "image_path", path, line) or _optional_str(row, "img_path", path, line),
        positives=_string_list(positives, "passage_id", path, line),
        answers=answers,
        line=line,
    )
    if query.text is None and query.image_path is None:
        raise RowError(path, line, "the query has neither instruction/question text nor image_path")
    return query


def iter_m2kr_queries(path: str | Path, errors: MalformedRows | None = None) -> Iterator[M2KRQuery]:
    """The queries of an M2KR queries jsonl, in file order (malformed rows reported to ``errors``)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        try:
            yield parse_m2kr_query(row, path, line)
        except RowError as err:
            errors.add(err)
