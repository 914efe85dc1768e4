"""Search options with LangChain's names and meanings, checked, and the searches they select.

LangChain users configure retrieval with ``k``, ``filter``, ``search_type`` (``similarity``,
``mmr``, ``similarity_score_threshold``) and ``search_kwargs`` (``fetch_k``,
``lambda_mult``, ``score_threshold``), on the retriever or per call. A misspelt option that
is silently ignored returns plausible but wrong results, so every option is checked here
and an unknown one is a :class:`~ret2vqa.errors.ConfigError` naming it.

Filters use the store's form (``docs/store.md``: ``{"topic": "coffee"}``, lists for "any
of", ``{"gte": ..}`` ranges) on the fields a document shows in ``metadata``;
``langchain-qdrant``'s ``"metadata.topic"`` spelling names the same field and is accepted.

Scores are the collection's similarity (cosine for ``distance: cosine``). LangChain's
"relevance score" in [0, 1] is that similarity clipped to [0, 1], and ``score_threshold``
is compared with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ret2vqa.errors import ConfigError
from ret2vqa.passage import Passage

__all__ = ["OPTION_NAMES", "SEARCH_TYPES", "SearchOptions", "relevance", "run_search"]

SEARCH_TYPES = ("similarity", "mmr", "similarity_score_threshold")
OPTION_NAMES = ("k", "filter", "search_type", "fetch_k", "lambda_mult", "score_threshold")
_METADATA_PREFIX = "metadata."


@dataclass(frozen=True)
class SearchOptions:
    """One search's settings: how many, which filter, which kind of search."""

    k: int = 4
    filter: Mapping[str, Any] | None = None
    search_type: str = "similarity"
    fetch_k: int = 20
    lambda_mult: float = 0.5
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ConfigError(f"must be an integer >= 0, got {self.k!r}", "k")
        if self.search_type not in SEARCH_TYPES:
            raise ConfigError(f"must be one of {list(SEARCH_TYPES)}, got {self.search_type!r}", "search_type")
        if isinstance(self.fetch_k, bool) or not isinstance(self.fetch_k, int) or self.fetch_k < 1:
            raise ConfigError(f"must be an integer >= 1, got {self.fetch_k!r}", "fetch_k")
        if not isinstance(self.lambda_mult, (int, float)) or not 0.0 <= float(self.lambda_mult) <= 1.0:
            raise ConfigError(f"must be a number in [0, 1], got {self.lambda_mult!r}", "lambda_mult")
        if self.search_type == "similarity_score_threshold" and self.score_threshold is None:
            raise ConfigError("required with search_type 'similarity_score_threshold' (a relevance score in [0, 1])",
                              "score_threshold")
        if self.score_threshold is not None and (
                isinstance(self.score_threshold, bool) or not isinstance(self.score_threshold, (int, float))):
            raise ConfigError(f"must be a number, got {self.score_threshold!r}", "score_threshold")
        object.__setattr__(self, "filter", normalise_filter(self.filter))

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | None) -> "SearchOptions":
        """Options from settings layered lowest first; a layer's ``search_kwargs`` is merged in place.

        Each layer is a mapping of option names (and ``search_kwargs``); ``None`` values
        leave the lower layer's value. An unknown name raises :class:`ConfigError`.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            if not layer:
                continue
            layer = dict(layer)
            nested = layer.pop("search_kwargs", None) or {}
            if not isinstance(nested, Mapping):
                raise ConfigError(f"must be a mapping of search options, got {type(nested).__name__}", "search_kwargs")
            for source, values in (("search_kwargs", nested), ("", layer)):
                unknown = sorted(set(values) - set(OPTION_NAMES))
                if unknown:
                    where = f"{source}." if source else ""
                    raise ConfigError(
                        f"unknown search option(s) {', '.join(where + u for u in unknown)} "
                        f"(known: {', '.join(OPTION_NAMES)})", source or None)
                merged.update({key: value for key, value in values.items() if value is not None})
        return cls(**merged)


def normalise_filter(spec: Any) -> dict[str, Any] | None:
    """The filter in the store's form, with ``metadata.`` prefixes removed; checked (ConfigError if malformed)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a filter is a mapping of metadata field -> value, list of values or range "
            f"(e.g. {{'topic': 'coffee'}}; see docs/store.md), got {type(spec).__name__}", "filter")
    from rag.store import parse_filter

    out = {}
    for key, value in spec.items():
        name = key[len(_METADATA_PREFIX):] if isinstance(key, str) and key.startswith(_METADATA_PREFIX) else key
        if name in out:
            raise ConfigError(f"field {name!r} appears twice (with and without 'metadata.')", "filter")
        out[name] = value
    try:
        parse_filter(out)
    except ConfigError as exc:
        raise ConfigError(exc.message, "filter") from None
    return out or None


def relevance(score: float | None) -> float:
    """LangChain's relevance score in [0, 1]: the similarity, clipped."""
    return 0.0 if score is None else min(1.0, max(0.0, float(score)))


def run_search(store: Any, vectors: np.ndarray, options: SearchOptions) -> list[list[Passage]]:
    """The passages of each query vector (rows of ``vectors``) under ``options``, best first, with scores."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if options.k == 0 or len(vectors) == 0:
        return [[] for _ in range(len(vectors))]
    if options.search_type == "mmr":
        fetched = store.search_batch(vectors, k=max(options.fetch_k, options.k), filter=options.filter)
        return [_mmr(store, vector, hits, options) for vector, hits in zip(vectors, fetched)]
    rows = store.search_batch(vectors, k=options.k, filter=options.filter)
    if options.search_type == "similarity_score_threshold":
        rows = [[p for p in row if relevance(p.score) >= options.score_threshold] for row in rows]
    return rows


def _mmr(store: Any, query: np.ndarray, hits: list[Passage], options: SearchOptions) -> list[Passage]:
    """Maximal marginal relevance over the fetched candidates (their vectors are read back from the store)."""
    from langchain_core.vectorstores.utils import maximal_marginal_relevance

    if not hits:
        return []
    stored = {p.id: p.vector for p in store.retrieve([p.id for p in hits], with_vectors=True)}
    candidates = [p for p in hits if stored.get(p.id) is not None]
    if not candidates:
        return []
    chosen = maximal_marginal_relevance(query, np.stack([stored[p.id] for p in candidates]),
                                        lambda_mult=float(options.lambda_mult), k=options.k)
    return [candidates[i] for i in chosen]
