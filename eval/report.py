"""Markdown tables and plots of evaluation results, for READMEs, papers' appendices and run logs.

:func:`markdown_report` takes named result dicts (the JSON of ``ret2vqa score infoseek``
/ ``score evqa``, or ``{k: recall}`` from :mod:`eval.retrieval`) and renders one table
per kind, recognised by shape. :func:`plot_recall_at_k` draws recall@k curves; every
``ret2vqa eval`` run writes one (``recall_at_k.png``).
"""

from __future__ import annotations

from pathlib import Path
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


def recall_table(results: Mapping[str, Mapping[int, float]], percent: bool = True, label: str = "run") -> str:
    """One row per run/level (first column headed ``label``), one column per k (``R@k``), in percent by default."""
    ks = sorted({int(k) for r in results.values() for k in r})
    rows = []
    for name, r in results.items():
        by_k = {int(k): v for k, v in r.items()}
        rows.append([name] + [float(by_k[k]) * (100 if percent else 1) if k in by_k else None for k in ks])
    return _table([label] + [f"R@{k}" for k in ks], rows)


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


def plot_recall_at_k(recalls: Mapping[str, Mapping[int, float]], path: str | Path, title: str) -> None:
    """Recall@k curves (one per name, k on a log axis, recall in percent) saved to ``path``.

    Names containing ``pseudo`` are dashed, so passage recall and pseudo-recall of one run
    can share a plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, values in recalls.items():
        ks = sorted(values)
        ax.plot(ks, [100 * values[k] for k in ks], marker="o", label=name.replace("_", " "),
                linestyle="--" if "pseudo" in name else "-")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k (%)")
    ax.set_ylim(0, 100)
    ax.set_xscale("log")
    ax.set_xticks(sorted({k for v in recalls.values() for k in v}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if recalls:
        ax.legend(fontsize="small" if len(recalls) > 4 else None)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
