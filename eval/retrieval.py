"""Retrieval recall@k as the KB-VQA literature computes it.

All functions return ``{k: recall}`` with recall in [0, 1] (the fraction of queries
with a hit in the top ``k``; multiply by 100 for tables). A query *hits* at ``k`` when:

* :func:`recall_at_k` (entity/article level, E-VQA ``wikipedia_url``, InfoSeek Wikidata
  QID; EchoSight convention): a positive id is among the first ``k`` **distinct** ids of
  its ranking, duplicates removed keeping the first occurrence (a ranking of passages or
  images mapped to their article has many repeats);
* :func:`passage_recall_at_k` (M2KR / PreFLMR convention): a positive passage id is among
  the first ``k`` retrieved ids, no de-duplication;
* :func:`pseudo_recall_at_k` (M2KR): some answer, ``.strip().lower()``, is a substring of
  one of the first ``k`` retrieved passage texts, lower-cased.

A ranking shorter than ``k`` is used as is. Queries without positives (or without any
non-empty answer) raise by default: they can never hit, and whether to count them is a
choice the caller should make explicitly (``on_empty="miss"`` counts them as misses, as
PreFLMR's script does).
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

OnEmpty = Literal["error", "miss"]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)


def _check_ks(ks: Iterable[int]) -> list[int]:
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return ks


def dedup_first(ids: Iterable) -> list:
    """Distinct ids in first-occurrence order."""
    seen: set = set()
    out = []
    for x in ids:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def first_hit_ranks(
    retrieved_ids_per_query: Sequence[Sequence],
    positive_ids_per_query: Sequence[Iterable],
    dedup: bool = True,
    on_empty: OnEmpty = "error",
) -> list[int | None]:
    """1-based rank of the first positive in each (optionally de-duplicated) ranking, ``None`` if absent."""
    if len(retrieved_ids_per_query) != len(positive_ids_per_query):
        raise ValueError(
            f"{len(retrieved_ids_per_query)} rankings but {len(positive_ids_per_query)} positive sets: one each per query"
        )
    ranks: list[int | None] = []
    for i, (retrieved, positives) in enumerate(zip(retrieved_ids_per_query, positive_ids_per_query)):
        if isinstance(positives, (str, bytes)):
            positives = [positives]
        positive_set = set(positives)
        if not positive_set and on_empty == "error":
            raise ValueError(f"query {i} has no positive ids (pass on_empty='miss' to count such queries as misses)")
        ranking = dedup_first(retrieved) if dedup else list(retrieved)
        ranks.append(next((r + 1 for r, x in enumerate(ranking) if x in positive_set), None))
    return ranks


def recall_from_ranks(ranks: Sequence[int | None], ks: Iterable[int]) -> dict[int, float]:
    """``{k: fraction of queries whose first hit is at rank <= k}`` (``None``: no hit)."""
    ks = _check_ks(ks)
    if not ranks:
        raise ValueError("no queries to evaluate")
    return {k: sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}


def recall_at_k(
    retrieved_ids_per_query: Sequence[Sequence],
    positive_ids_per_query: Sequence[Iterable],
    ks: Iterable[int] = DEFAULT_KS,
    dedup: bool = True,
    on_empty: OnEmpty = "error",
) -> dict[int, float]:
    """Entity/article-level recall@k: a positive among the first ``k`` distinct retrieved ids."""
    return recall_from_ranks(first_hit_ranks(retrieved_ids_per_query, positive_ids_per_query, dedup, on_empty), ks)


def passage_recall_at_k(
    retrieved_ids_per_query: Sequence[Sequence],
    positive_ids_per_query: Sequence[Iterable],
    ks: Iterable[int] = DEFAULT_KS,
    on_empty: OnEmpty = "error",
) -> dict[int, float]:
    """Passage-level recall@k (M2KR ``pos_item_ids``): a positive among the first ``k`` retrieved ids."""
    return recall_at_k(retrieved_ids_per_query, positive_ids_per_query, ks, dedup=False, on_empty=on_empty)


def pseudo_hit_ranks(
    retrieved_texts_per_query: Sequence[Sequence[str]],
    answers_per_query: Sequence[Iterable[str]],
    on_empty: OnEmpty = "error",
) -> list[int | None]:
    """1-based rank of the first passage containing an answer (stripped, lower-cased), ``None`` if absent.

    Answers that are empty after ``strip()`` are ignored: as substrings they would match
    every passage.
    """
    if len(retrieved_texts_per_query) != len(answers_per_query):
        raise ValueError(
            f"{len(retrieved_texts_per_query)} rankings but {len(answers_per_query)} answer lists: one each per query"
        )
    ranks: list[int | None] = []
    for i, (texts, answers) in enumerate(zip(retrieved_texts_per_query, answers_per_query)):
        if isinstance(answers, str):
            answers = [answers]
        needles = [a.strip().lower() for a in answers if a.strip()]
        if not needles and on_empty == "error":
            raise ValueError(
                f"query {i} has no non-empty answer (pass on_empty='miss' to count such queries as misses)"
            )
        ranks.append(next((r + 1 for r, text in enumerate(texts) if any(n in text.lower() for n in needles)), None))
    return ranks


def pseudo_recall_at_k(
    retrieved_texts_per_query: Sequence[Sequence[str]],
    answers_per_query: Sequence[Iterable[str]],
    ks: Iterable[int] = DEFAULT_KS,
    on_empty: OnEmpty = "error",
) -> dict[int, float]:
    """M2KR pseudo-recall@k: an answer (stripped, lower-cased) is a substring of a top-``k`` passage (lower-cased)."""
    return recall_from_ranks(pseudo_hit_ranks(retrieved_texts_per_query, answers_per_query, on_empty), ks)


def evqa_article_positives(question) -> list[str]:
    """Article-level ground truth of an E-VQA question: the pictured entity's URL (the first one for 2_hop)."""
    return [question.entity_url]
