"""Benchmarks and official metrics for knowledge-based VQA.

* :mod:`eval.evqa` — Encyclopedic-VQA: question CSVs, the streamed KB json, image files,
  the official metric (exact match, multi-answer IoU, BEM).
* :mod:`eval.infoseek` — InfoSeek: annotation / qtype / withkb files, Wiki6M and Wiki100K
  KBs, OVEN images, the official metric (String / Time / Numerical, harmonic mean).
* :mod:`eval.m2kr` — M2KR queries and passages (the one reader, shared with ingestion and training).
* :mod:`eval.mbeir` — M-BEIR queries, candidate pools, qrels and instructions (UniIR's conventions).
* :mod:`eval.retrieval` — recall@k: article/entity level, passage level, pseudo-recall.
* :mod:`eval.answering` — answer accuracy of the pipeline on an E-VQA / InfoSeek split
  (``ret2vqa eval``): predictions, rankings, recall@k, the official metric, a report.
* :mod:`eval.retrieval_benchmark` — M2KR / M-BEIR retrieval runs (``ret2vqa eval m2kr|mbeir``):
  per-task collections, rankings, Recall@K / pseudo-Recall@K, a report.
* :mod:`eval.report` — markdown tables and recall@k plots of results.
* :mod:`eval.metrics` — the same metrics as ``evaluate`` modules loadable offline.
* :mod:`eval.cli` — ``ret2vqa eval`` and ``ret2vqa score``.

See ``docs/eval.md``. Importing any of these is cheap; heavy libraries load on use.
"""
