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

Files are jsonl or, as the HF dataset ships them, parquet (:func:`iter_m2kr_rows`; a
parquet row's "line" is its 1-based row number). :func:`find_m2kr_tasks` finds the
per-task files of the original layout (``<Task>_data/<split>-*.parquet`` beside
``<Task>_passages/<split>_passages-*.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ret2vqa.errors import ConfigError, MissingFileError
from ret2vqa.io import MalformedRows, RowError, iter_jsonl

#: Passage fields the parser interprets; any other scalar field is kept in ``extra``.
PASSAGE_FIELDS = frozenset({"passage_id", "passage_text", "passage_content", "passage_image_path"})


def iter_m2kr_rows(path: str | Path, errors: MalformedRows | None = None,
                   start_line: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of an M2KR file: jsonl (line numbers) or ``.parquet`` (1-based row numbers).

    Parquet is streamed a record batch at a time; ``start_line`` skips whole row groups
    before it without decoding them (resuming an interrupted indexing run).
    """
    path = Path(path)
    if path.suffix != ".parquet":
        yield from iter_jsonl(path, errors, start_line=start_line)
        return
    import pyarrow.parquet as pq

    if not path.is_file():
        raise MissingFileError(path)
    parquet = pq.ParquetFile(path)
    row = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if row + size < start_line:
            row += size
            continue
        for batch in parquet.iter_batches(batch_size=4096, row_groups=[group]):
            for record in batch.to_pylist():
                row += 1
                if row >= start_line:
                    yield row, record


def count_m2kr_rows(path: str | Path) -> int | None:
    """Rows of a parquet file (from its footer), ``None`` for jsonl (the caller counts lines)."""
    if Path(path).suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


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
    for line, row in iter_m2kr_rows(path, errors, start_line=start_line):
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


def _answer(value: Any) -> str:
    """An answer as text; InfoSeek's numerical answers ``{"wikidata": 14.0, "range": [...]}`` give their value
    (as ReT's evaluation reads them)."""
    if isinstance(value, dict) and "wikidata" in value:
        return str(value["wikidata"])
    return str(value)


def parse_m2kr_query(row: dict[str, Any], path: str | Path, line: int) -> M2KRQuery:
    """An :class:`M2KRQuery` from one jsonl row; raises :class:`RowError` when it is malformed."""
    positives = row.get("passage_id", row.get("pos_item_ids"))
    if positives in (None, "", []):
        raise RowError(path, line, "missing positive 'passage_id' (or 'pos_item_ids')")
    answers = row.get("answer", row.get("answers"))
    answers = [] if answers in (None, "") else [_answer(a) for a in (answers if isinstance(answers, list) else [answers])
                                                if a is not None]
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
    for line, row in iter_m2kr_rows(path, errors):
        try:
            yield parse_m2kr_query(row, path, line)
        except RowError as err:
            errors.add(err)


@dataclass(frozen=True)
class M2KRTaskFiles:
    """One task of the original M2KR layout: its query files and its passage corpus (one split of each)."""

    name: str
    queries: tuple[Path, ...]
    passages: tuple[Path, ...]


_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz")


def _split_files(directory: Path, stem: str) -> tuple[Path, ...]:
    """``<stem>.jsonl`` / ``<stem>-00000-of-00002.parquet`` ... in ``directory``, in name order."""
    found = []
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        name = path.name
        suffix = next((s for s in _SUFFIXES if name.endswith(s)), None)
        if suffix and path.is_file() and (name == stem + suffix or name.startswith(stem + "-")):
            found.append(path)
    return tuple(found)


def find_m2kr_tasks(data_dir: str | Path, split: str = "test", tasks: Sequence[str] | None = None) -> list[M2KRTaskFiles]:
    """The tasks of an M2KR download (``BByrneLab/multi_task_multi_modal_knowledge_retrieval_benchmark_M2KR``).

    Each task is a ``<Task>_data`` folder (query splits ``train`` / ``valid`` / ``test``,
    e.g. ``test-00000-of-00001.parquet``) beside a ``<Task>_passages`` folder
    (``test_passages-00000-of-00001.parquet``); jsonl exports with the same names are read
    too. ``tasks`` selects some by name (case-insensitive); all found are returned otherwise.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise MissingFileError(root, "M2KR data directory")
    available = {p.name[: -len("_data")]: p for p in sorted(root.iterdir()) if p.is_dir() and p.name.endswith("_data")}
    if not available:
        raise ConfigError(f"{root} holds no <Task>_data folder (the layout of the M2KR dataset download)", "--data")
    by_lower = {name.lower(): name for name in available}
    chosen = list(available) if not tasks else []
    for task in tasks or []:
        if task.lower() not in by_lower:
            raise ConfigError(f"no task {task!r} in {root} (found: {', '.join(available)})", "--tasks")
        chosen.append(by_lower[task.lower()])
    out = []
    for name in chosen:
        queries = _split_files(available[name], split)
        if not queries:
            raise MissingFileError(available[name] / f"{split}-*.parquet", f"M2KR {name} {split} queries")
        passages = _split_files(root / f"{name}_passages", f"{split}_passages")
        if not passages:
            raise MissingFileError(root / f"{name}_passages" / f"{split}_passages-*.parquet", f"M2KR {name} passages")
        out.append(M2KRTaskFiles(name, queries, passages))
    return out
