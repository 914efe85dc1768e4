"""Benchmarks and official metrics for knowledge-based VQA.

* :mod:`eval.evqa` — Encyclopedic-VQA: question CSVs, the streamed KB json, image files,
  the official metric (exact match, multi-answer IoU, BEM).
* :mod:`eval.infoseek` — InfoSeek: annotation / qtype / withkb files, Wiki6M and Wiki100K
  KBs, OVEN images, the official metric (String / Time / Numerical, harmonic mean).
* :mod:`eval.retrieval` — recall@k: article/entity level, passage level, pseudo-recall.
* :mod:`eval.report` — markdown tables of results.
* :mod:`eval.metrics` — the same metrics as ``evaluate`` modules loadable offline.
* :mod:`eval.cli` — ``ret2vqa score``.

See ``docs/eval.md``. Importing any of these is cheap; heavy libraries load on use.
"""
