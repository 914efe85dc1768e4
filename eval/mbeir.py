"""M-BEIR (UniIR's universal multimodal retrieval benchmark): the one reader of its files.

Layout under the ``M-BEIR`` root (``TIGER-Lab/M-BEIR``), as UniIR's evaluation reads it::

    query/<split>/mbeir_<dataset>_task<N>_<split>.jsonl        queries (qid, query_txt, query_img_path,
                                                              query_modality, pos_cand_list, ...)
    cand_pool/local/mbeir_<dataset>_task<N>[_<split>]_cand_pool.jsonl   a task's own pool
    cand_pool/global/mbeir_union_<split>_cand_pool.jsonl       the union pool (5.6M candidates for test)
    qrels/<split>/mbeir_<dataset>_task<N>_<split>_qrels.txt    "qid 0 did relevance task_id" lines
    instructions/query_instructions.tsv                       the per-task query instructions
    mbeir_images/...                                          images; img paths are relative to the root

Conventions reproduced from UniIR (``src/data/mbeir_dataset.py``,
``src/common/mbeir_retriever.py``): texts go through :func:`format_string`; a query is
``format_string(f"{prompt} {query_txt}")`` with the prompt looked up by ``"{dataset_id},
{query modality}, {candidate modality}"`` in the instructions file (UniIR draws one of the
prompts at random; we take the first, so runs are deterministic); the relevant candidates
are the qrels' (relevance > 0); Recall@K is 1 when any relevant candidate is in the top K
(the CLIP/BLIP convention), with K = 1, 5, 10, or 10, 20, 50 for Fashion200K and FashionIQ.
A malformed row raises :class:`~ret2vqa.io.RowError` naming file and line, which the
``iter_*`` readers report to a :class:`~ret2vqa.io.MalformedRows`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ret2vqa.errors import ConfigError, InputError, MissingFileError
from ret2vqa.io import MalformedRows, RowError, iter_jsonl, open_text

#: Dataset ids (the part of a qid/did before the colon) and names, as UniIR numbers them.
DATASETS: dict[int, str] = {
    0: "VisualNews", 1: "Fashion200K", 2: "WebQA", 3: "EDIS", 4: "NIGHTS",
    5: "OVEN", 6: "INFOSEEK", 7: "FashionIQ", 8: "CIRR", 9: "MSCOCO",
}

#: Task ids: (query modality, candidate modality). Task 5 is defined but unused.
TASKS: dict[int, tuple[str, str]] = {
    0: ("text", "image"), 1: ("text", "text"), 2: ("text", "image,text"), 3: ("image", "text"),
    4: ("image", "image"), 5: ("image", "text,image"), 6: ("image,text", "text"),
    7: ("image,text", "image"), 8: ("image,text", "image,text"),
}

MODALITIES = frozenset({"text", "image", "image,text"})

#: The 16 dataset/task rows of UniIR's tables, in their order (task id, then this order).
TABLE_ORDER: tuple[str, ...] = (
    "visualnews_task0", "mscoco_task0", "fashion200k_task0", "webqa_task1", "edis_task2", "webqa_task2",
    "visualnews_task3", "mscoco_task3", "fashion200k_task3", "nights_task4", "oven_task6", "infoseek_task6",
    "fashioniq_task7", "cirr_task7", "oven_task8", "infoseek_task8",
)

_FASHION = frozenset({"fashion200k", "fashioniq"})
_NAME = re.compile(r"^mbeir_(?P<dataset>[a-z0-9]+)_task(?P<task>\d+)_(?P<split>[a-z_]+)\.jsonl$")


def recall_ks(dataset: str) -> tuple[int, ...]:
    """UniIR's cut-offs: R@10/20/50 for the fashion sets, R@1/5/10 for the others."""
    return (10, 20, 50) if dataset.lower() in _FASHION else (1, 5, 10)


def headline_k(dataset: str) -> int:
    """The cut-off UniIR's main table reports: R@10 for Fashion200K and FashionIQ, R@5 otherwise."""
    return 10 if dataset.lower() in _FASHION else 5


def format_string(text: str | None) -> str:
    """UniIR's text normalisation: strip, drop ``\\r`` and surrounding ``"``, capitalise, end with ``. ? !``."""
    s = (text or "").replace("\r", "").strip().strip('"')
    if s:
        s = s[0].upper() + s[1:]
        if s[-1] not in ".?!":
            s += "."
    return s


def split_instruction(prompt: str, query_txt: str | None) -> tuple[str, str]:
    """``(instruction, question)`` whose ``f"{instruction} {question}".strip()`` is UniIR's query text,
    ``format_string(f"{prompt} {query_txt}")``, so the encoder can be given the instruction separately."""
    instruction = format_string(prompt)
    full = format_string(f"{instruction} {query_txt or ''}")
    if full == instruction:
        return instruction, ""
    if instruction and full.startswith(instruction + " "):
        return instruction, full[len(instruction) + 1:]
    return "", full


def _dataset_id(value: Any, name: str, path: str | Path, line: int) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"\d+:\d+", value):
        raise RowError(path, line, f"'{name}' must be '<dataset_id>:<n>', got {value!r}")
    return int(value.split(":", 1)[0])


def _optional_str(row: dict[str, Any], name: str, path: str | Path, line: int) -> str | None:
    value = row.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise RowError(path, line, f"'{name}' must be a string or null, got {type(value).__name__}")
    return value


def _item(row: dict[str, Any], path: str | Path, line: int, what: str, id_key: str, text_key: str, image_key: str,
          modality_key: str) -> tuple[str, int, str | None, str | None, str]:
    """``(id, dataset id, text, image path, modality)`` of a query or candidate row, checked against each other."""
    item_id = row.get(id_key)
    dataset_id = _dataset_id(item_id, id_key, path, line)
    text = _optional_str(row, text_key, path, line)
    image = _optional_str(row, image_key, path, line)
    modality = row.get(modality_key)
    if modality not in MODALITIES:
        raise RowError(path, line, f"'{modality_key}' must be one of {sorted(MODALITIES)}, got {modality!r}")
    if "text" in modality.split(",") and not (text or "").strip():
        raise RowError(path, line, f"{what} {item_id} has modality '{modality}' but no text")
    if "image" in modality.split(",") and not image:
        raise RowError(path, line, f"{what} {item_id} has modality '{modality}' but no image path")
    return item_id, dataset_id, text, image, modality


@dataclass(frozen=True)
class MBEIRQuery:
    """One query: its id, raw text (no prompt), image path (relative to the M-BEIR root), modality."""

    qid: str
    dataset_id: int
    text: str | None
    image_path: str | None
    modality: str
    positives: tuple[str, ...]
    line: int


def parse_mbeir_query(row: dict[str, Any], path: str | Path, line: int) -> MBEIRQuery:
    """An :class:`MBEIRQuery` from one query row; raises :class:`RowError` when it is malformed."""
    qid, dataset_id, text, image, modality = _item(row, path, line, "query", "qid", "query_txt", "query_img_path",
                                                   "query_modality")
    positives = row.get("pos_cand_list") or []
    if not isinstance(positives, list) or not all(isinstance(d, str) for d in positives):
        raise RowError(path, line, f"query {qid}: 'pos_cand_list' must be a list of did strings")
    return MBEIRQuery(qid, dataset_id, text, image, modality, tuple(positives), line)


def iter_mbeir_queries(path: str | Path, errors: MalformedRows | None = None) -> Iterator[MBEIRQuery]:
    """The queries of an M-BEIR query jsonl, in file order (malformed rows reported to ``errors``)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors):
        try:
            yield parse_mbeir_query(row, path, line)
        except RowError as err:
            errors.add(err)


@dataclass(frozen=True)
class MBEIRCandidate:
    """One candidate of a pool: its did, raw text, image path (relative to the M-BEIR root), modality."""

    did: str
    dataset_id: int
    text: str | None
    image_path: str | None
    modality: str
    line: int


def parse_mbeir_candidate(row: dict[str, Any], path: str | Path, line: int) -> MBEIRCandidate:
    """An :class:`MBEIRCandidate` from one pool row; raises :class:`RowError` when it is malformed."""
    did, dataset_id, text, image, modality = _item(row, path, line, "candidate", "did", "txt", "img_path", "modality")
    return MBEIRCandidate(did, dataset_id, text, image, modality, line)


def iter_mbeir_candidates(path: str | Path, errors: MalformedRows | None = None,
                          start_line: int = 1) -> Iterator[MBEIRCandidate]:
    """The candidates of an M-BEIR pool jsonl, in file order (malformed rows reported to ``errors``)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    for line, row in iter_jsonl(path, errors, start_line=start_line):
        try:
            yield parse_mbeir_candidate(row, path, line)
        except RowError as err:
            errors.add(err)


@dataclass
class Qrels:
    """Relevant candidates (relevance > 0) and the task id of each query of a qrels file."""

    relevant: dict[str, list[str]]
    task_ids: dict[str, int]


def load_qrels(path: str | Path, errors: MalformedRows | None = None) -> Qrels:
    """A TREC-style qrels file: ``qid 0 did relevance task_id`` per line (whitespace-separated)."""
    errors = errors if errors is not None else MalformedRows(strict=True)
    qrels = Qrels({}, {})
    with open_text(path) as fh:
        for line, raw in enumerate(fh, start=1):
            parts = raw.split()
            if not parts:
                continue
            if len(parts) != 5 or not parts[3].lstrip("-").isdigit() or not parts[4].isdigit():
                errors.report(path, line, f"expected 'qid 0 did relevance task_id', got {raw.strip()!r}")
                continue
            qid, _, did, relevance, task_id = parts
            if int(relevance) > 0:
                relevant = qrels.relevant.setdefault(qid, [])
                if did not in relevant:
                    relevant.append(did)
                qrels.task_ids.setdefault(qid, int(task_id))
    return qrels


def load_instructions(path: str | Path) -> dict[str, list[str]]:
    """``"{dataset_id}, {query modality}, {candidate modality}"`` → prompts, from ``query_instructions.tsv``.

    Columns (after a header row): query modality, candidate modality, (task), dataset id,
    then the prompts; empty prompt cells are ignored.
    """
    prompts: dict[str, list[str]] = {}
    with open_text(path) as fh:
        next(fh, None)  # header
        for line, raw in enumerate(fh, start=2):
            parts = raw.rstrip("\r\n").split("\t")
            if not raw.strip():
                continue
            if len(parts) < 5:
                raise RowError(path, line, f"expected >= 5 tab-separated columns, got {len(parts)}")
            prompts[f"{parts[3].strip()}, {parts[0].strip()}, {parts[1].strip()}"] = [p for p in parts[4:] if p.strip()]
    return prompts


def query_prompt(instructions: dict[str, list[str]], dataset_id: int, task_id: int, where: str) -> str:
    """The (first) prompt for ``dataset_id``'s queries of task ``task_id``."""
    qmod, cmod = TASKS[task_id]
    key = f"{dataset_id}, {qmod}, {cmod}"
    prompts = instructions.get(key)
    if not prompts:
        raise InputError(f"{where}: no instruction for '{key}' (dataset id, query modality, candidate modality)")
    return prompts[0]


@dataclass(frozen=True)
class MBEIRTaskFiles:
    """One dataset/task of a split: its queries, qrels and candidate pools."""

    name: str  # "mscoco_task0"
    dataset: str  # "mscoco"
    task_id: int
    queries: Path
    qrels: Path
    local_pool: Path
    union_pool: Path

    @property
    def dataset_name(self) -> str:
        """UniIR's spelling (``MSCOCO``, ``WebQA``, ...)."""
        return next((n for n in DATASETS.values() if n.lower() == self.dataset), self.dataset)


def find_mbeir_tasks(root: str | Path, split: str = "test", tasks: Sequence[str] | None = None) -> list[MBEIRTaskFiles]:
    """The dataset/task query files of ``split`` under an M-BEIR root, in UniIR's table order.

    ``tasks`` selects by full name (``mscoco_task0``) or dataset (``mscoco``: all its tasks).
    Pool and qrels paths are returned whether or not they exist (the caller checks what it uses).
    """
    root = Path(root)
    query_dir = root / "query" / split
    if not query_dir.is_dir():
        raise MissingFileError(query_dir, f"M-BEIR {split} query folder")
    found: list[MBEIRTaskFiles] = []
    for path in sorted(query_dir.glob("mbeir_*.jsonl")):
        m = _NAME.match(path.name)
        if not m or m["split"] != split:
            continue
        name = f"{m['dataset']}_task{m['task']}"
        local = root / "cand_pool" / "local" / f"mbeir_{name}_{split}_cand_pool.jsonl"  # MSCOCO: one pool per split
        if not local.is_file():
            local = root / "cand_pool" / "local" / f"mbeir_{name}_cand_pool.jsonl"
        found.append(MBEIRTaskFiles(
            name=name, dataset=m["dataset"], task_id=int(m["task"]), queries=path,
            qrels=root / "qrels" / split / f"mbeir_{name}_{split}_qrels.txt", local_pool=local,
            union_pool=root / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl",
        ))
    if not found:
        raise ConfigError(f"{query_dir} holds no mbeir_<dataset>_task<N>_{split}.jsonl query file", "--root")
    if tasks:
        wanted = [t.strip().lower() for t in tasks if t.strip()]
        unknown = [t for t in wanted if not any(t in (f.name, f.dataset) for f in found)]
        if unknown:
            raise ConfigError(f"no task {unknown[0]!r} in {query_dir} (found: {', '.join(f.name for f in found)})",
                              "--tasks")
        found = [f for f in found if f.name in wanted or f.dataset in wanted]
    order = {name: i for i, name in enumerate(TABLE_ORDER)}
    return sorted(found, key=lambda f: (f.task_id, order.get(f.name, len(order)), f.name))

