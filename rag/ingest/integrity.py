"""Does a collection hold what its indexing progress says it holds? Count, sample, read back.

A collection can be damaged behind the indexer's back: a segment directory deleted, a
vector or payload file cut short by a full disk or a bad copy. Qdrant then opens it and
counts what is left, so the progress record ("36 passages, complete") and the store
(6 points) disagree, or a search fails deep inside the engine. The checks here:

* **count**: every progress record (one per KB indexed into the collection) keeps the
  number of distinct points its passages added (``points``); their sum is what the store
  must hold at least;
* **vectors readable**: a sample of points read back with their vectors, each finite,
  of the collection's dimension and non-zero;
* **payloads decodable**: each sampled payload names its passage id, and the sampled ids
  can be fetched by id;
* **search**: one exact search (which reads every vector) with a sampled vector.

:func:`verify_collection` runs them all (``ret2vqa index verify``); ``index info`` runs the
cheap ones; ``index build`` compares the count before it resumes and re-indexes a KB whose
points went missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from ret2vqa.errors import CollectionDamagedError
from ret2vqa.passage import PASSAGE_ID_KEY


def expected_points(states: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The points the progress records account for (``None`` when none records them: older builds)."""
    known = [int(s["points"]) for s in states.values() if s.get("points") is not None]
    return sum(known) if known else None


@dataclass
class IntegrityReport:
    """What :func:`verify_collection` found; ``problems`` is empty for a healthy collection."""

    collection: str
    count: int | None = None
    expected: int | None = None
    sampled: int = 0
    searched: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        expected = f" (progress records {self.expected})" if self.expected is not None else ""
        head = (f"{self.collection}: {self.count if self.count is not None else '?'} points{expected}; "
                f"{self.sampled} sampled points read back" + ("; exact search ok" if self.searched else ""))
        if self.ok:
            return head + "; no problems found"
        return head + "\n" + "\n".join(f"  problem: {p}" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    @property
    def repairable(self) -> bool:
        """Only points are missing (``index build`` re-indexes them); other damage needs a rebuild."""
        return self.problems == [count_problem(self.count or 0, self.expected)]

    def error(self) -> CollectionDamagedError:
        fix = ("Run `ret2vqa index build` with the same --kb and --format to re-index the missing passages"
               if self.repairable else "Move the collection away and build it again with `ret2vqa index build`")
        return CollectionDamagedError(f"{self.collection} is damaged: {'; '.join(self.problems)}. {fix}")


def count_problem(count: int, expected: int | None) -> str | None:
    """The mismatch between the store's count and the progress records, in words (``None``: none)."""
    if expected is None or count >= expected:
        return None
    return (f"it holds {count} points but its indexing progress records {expected}: "
            f"{expected - count} passages are missing (a segment deleted or lost?)")


def verify_collection(store: Any, states: Mapping[str, Mapping[str, Any]], sample: int = 1000,
                      search: bool = True) -> IntegrityReport:
    """Check ``store`` against its progress ``states`` (see the module docstring); never raises for damage."""
    report = IntegrityReport(collection=store.config.describe(), expected=expected_points(states))
    try:
        report.count = store.count()
    except CollectionDamagedError as exc:
        report.problems.append(f"cannot count its points ({exc})")
        return report
    problem = count_problem(report.count, report.expected)
    if problem:
        report.problems.append(problem)
    try:
        passages = store.sample(sample, with_vectors=True)
    except CollectionDamagedError as exc:
        report.problems.append(f"its points cannot be read back ({_cause(exc)})")
        return report
    report.sampled = len(passages)
    if report.count and not passages:
        report.problems.append(f"it counts {report.count} points but none can be read back")
    dim = store.dim
    multivector = store.metadata.multivector  # a late-interaction collection: (T, dim) token sets
    expected_shape = f"(T, {dim})" if multivector else f"({dim},)"
    for p in passages:
        vector = None if p.vector is None else np.asarray(p.vector, dtype=np.float32)
        shape_ok = vector is not None and (
            (vector.ndim == 2 and vector.shape[0] >= 1 and vector.shape[1] == dim) if multivector
            else vector.shape == (dim,))
        if not shape_ok:
            report.problems.append(f"passage {p.id!r}: vector of shape {None if vector is None else vector.shape}, "
                                   f"expected {expected_shape}")
        elif not np.isfinite(vector).all() or not np.any(vector):
            report.problems.append(f"passage {p.id!r}: its vector is zero, NaN or infinite")
        if not isinstance((p.payload or {}).get(PASSAGE_ID_KEY), str):
            report.problems.append(f"point {p.id}: its payload does not name its passage ({PASSAGE_ID_KEY})")
        if len(report.problems) >= 10:
            break
    if passages and not report.problems:
        ids = [p.id for p in passages]
        try:
            found = store.retrieve(ids)
            if len(found) != len(ids):
                report.problems.append(f"{len(ids) - len(found)} of {len(ids)} sampled passages cannot be fetched by id")
            if search:
                store.search(passages[0].vector, k=min(10, max(1, report.count or 1)), exact=True)
                report.searched = True
        except CollectionDamagedError as exc:
            report.problems.append(f"its points cannot be read back ({_cause(exc)})")
    return report


def _cause(exc: Exception) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
