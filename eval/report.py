"""Markdown tables of evaluation results, for READMEs, papers' appendices and run logs.

:func:`markdown_report` takes named result dicts (the JSON of ``ret2vqa score infoseek``
/ ``score evqa``, or ``{k: recall}`` from :mod:`eval.retrieval`) and renders one table
per kind, recognised by shape.
"""

from __future__ import annotations

from typing import Any, Mapping


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def infoseek_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per run: final, both split scores and the per-type scores."""
    header = ["run", "final", "unseen question", "unseen entity"]
    parts = ["time", "num", "string"]
    header += [f"UQ {p}" for p in parts] + [f"UE {p}" for p in parts]
    rows = []
    for name, r in results.items():
        uq, ue = r["unseen_question_score"], r["unseen_entity_score"]
        rows.append(
            [name, float(r["final_score"]), float(uq["score"]), float(ue["score"])]
            + [float(uq[f"score_{p}"]) for p in parts]
            + [float(ue[f"score_{p}"]) for p in parts]
        )
    return _table(header, rows)


def evqa_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per run: metric, overall / single-hop / two-hop and per-type accuracy."""
    types = ["templated", "automatic", "multi_answer", "2_hop"]
    header = ["run", "metric", "all", "single-hop", "two-hop", *types, "n"]
    rows = []
    for name, r in results.items():
        by_type = r.get("by_question_type", {})
        rows.append(
            [name, r["metric"], float(r["accuracy"])]
            + [float(r[k]["accuracy"]) if k in r else None for k in ("single_hop", "two_hop")]
            + [float(by_type[t]["accuracy"]) if t in by_type else None for t in types]
            + [r["n"]]
        )
    table = _table(header, rows)
    if any(r["metric"] == "exact_match" for r in results.values()):
        table += "\n\nexact_match rows are EM only: a lower bound, not the official (EM then BEM) E-VQA score."
    return table


def recall_table(results: Mapping[str, Mapping[int, float]], percent: bool = True) -> str:
    """One row per run/level, one column per k (``R@k``), in percent by default."""
    ks = sorted({int(k) for r in results.values() for k in r})
    rows = []
    for name, r in results.items():
        by_k = {int(k): v for k, v in r.items()}
        rows.append([name] + [float(by_k[k]) * (100 if percent else 1) if k in by_k else None for k in ks])
    return _table(["run"] + [f"R@{k}" for k in ks], rows)


def _kind(result: Mapping[str, Any]) -> str:
    if "final_score" in result and "unseen_question_score" in result:
        return "infoseek"
    if "accuracy" in result and "metric" in result:
        return "evqa"
    if result and all(str(k).isdigit() for k in result):
        return "recall"
    raise ValueError(f"unrecognised result shape with keys {sorted(result)[:6]}")


def markdown_report(results: Mapping[str, Mapping[str, Any]], title: str = "Evaluation report") -> str:
    """A markdown document with one section per kind of result (InfoSeek, E-VQA, retrieval recall)."""
    groups: dict[str, dict[str, Mapping[str, Any]]] = {}
    for name, result in results.items():
        groups.setdefault(_kind(result), {})[name] = result
    sections = [f"# {title}"]
    if "infoseek" in groups:
        sections.append("## InfoSeek (official metric)\n\n" + infoseek_table(groups["infoseek"]))
    if "evqa" in groups:
        sections.append("## Encyclopedic-VQA accuracy (%)\n\n" + evqa_table(groups["evqa"]))
    if "recall" in groups:
        sections.append("## Retrieval recall@k (%)\n\n" + recall_table(groups["recall"]))
    return "\n\n".join(sections) + "\n"
