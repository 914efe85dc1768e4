"""``evaluate`` modules for the official metrics, loadable offline from a local path.

Each folder holds a script of the same name defining an ``evaluate.Metric`` that calls
into the one implementation in :mod:`eval.infoseek`, :mod:`eval.evqa` and
:mod:`eval.retrieval`::

    import evaluate
    from eval.metrics import metric_path

    metric = evaluate.load(metric_path("infoseek_accuracy"))   # or "eval/metrics/infoseek_accuracy" from the repo root

Modules: ``infoseek_accuracy``, ``evqa_accuracy``, ``retrieval_recall``.
"""

from pathlib import Path

METRICS: tuple[str, ...] = ("infoseek_accuracy", "evqa_accuracy", "retrieval_recall")


def metric_path(name: str) -> str:
    """The local folder of metric ``name``, for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return str(Path(__file__).resolve().parent / name)
