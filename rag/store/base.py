"""The store interface the rest of ret2vqa codes against, and what every backend shares.

The pipeline, the LangChain retriever and the indexer only see :class:`VectorStore`:
upsert a batch of passages, search top-k (optionally filtered on payload fields),
count, fetch by id, delete. Which Qdrant runs underneath (embedded Qdrant Edge, or a
server/cluster through ``qdrant-client``) is a config choice (:mod:`rag.store.config`).

A collection remembers which encoder filled it (:class:`CollectionMetadata`): vectors
from two different models are not comparable, so opening a collection with another
encoder or dimension is refused with a message that says what was expected
(:func:`check_compatible`). A late-interaction encoder fills a *multivector* collection:
each passage holds ``(T, dim)`` vectors and Qdrant ranks by MaxSim (the sum over query
tokens of the best match among the passage's tokens); a collection of the other kind is
refused the same way. Point ids are UUID5 of the passage id
(:func:`point_id`), so re-indexing a passage overwrites it instead of duplicating it.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as _dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ret2vqa import __version__
from ret2vqa.errors import (
    CollectionDamagedError,
    CollectionMismatchError,
    CollectionNotFoundError,
    ConfigError,
    InputError,
    StoreError,
    StoreLockedError,
)
from ret2vqa.passage import PASSAGE_ID_KEY, Passage

from .config import StoreConfig

__all__ = [
    "POINT_ID_NAMESPACE", "PASSAGE_ID_KEY", "CollectionDamagedError", "CollectionMetadata", "CollectionMismatchError",
    "CollectionNotFoundError",
    "StoreError", "StoreLockedError", "VectorStore", "check_compatible", "parse_filter", "point_id",
]

# Fixed namespace for point ids: uuid5(NAMESPACE_URL, "https://github.com/ret2vqa/ret2vqa/passage").
# Changing it would orphan every existing collection: never change it.
POINT_ID_NAMESPACE = uuid.UUID("693201e4-9dcc-518b-b406-146fb10f8d79")

METADATA_SCHEMA_VERSION = 1


def point_id(passage_id: str) -> str:
    """The deterministic Qdrant point id (a UUID string) of ``passage_id``."""
    if not isinstance(passage_id, str) or not passage_id:
        raise ValueError(f"passage ids must be non-empty strings, got {passage_id!r}")
    return str(uuid.uuid5(POINT_ID_NAMESPACE, passage_id))


@dataclass
class CollectionMetadata:
    """What a collection records about how it was built; checked every time it is opened.

    ``multivector``: each passage holds several ``dim``-wide vectors compared by MaxSim
    (a late-interaction encoder); ``False``: one vector per passage.
    ``encoder_fingerprint`` identifies the weights (two loads of the same checkpoint,
    by hub name or local path, share it); ``encoder_loader`` says how to rebuild the
    encoder for ``ret2vqa search`` when no config is given (e.g. the tiny test
    encoder's backbone and seed). ``config`` keeps the store/ingest settings the
    collection was created with, for ``ret2vqa index info``.
    """

    encoder_name: str
    dim: int
    encoder_revision: str | None = None
    encoder_fingerprint: str | None = None
    distance: str = "cosine"
    multivector: bool = False
    encoder_loader: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    created_with: str = f"ret2vqa {__version__}"
    schema_version: int = METADATA_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.created_at:
            self.created_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if int(self.dim) < 1:
            raise ValueError(f"embedding dimension must be >= 1, got {self.dim}")
        self.dim = int(self.dim)
        self.multivector = bool(self.multivector)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "collection metadata") -> "CollectionMetadata":
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("encoder_name", "dim") if k not in data]
        if missing:
            raise StoreError(f"{where}: missing field(s) {missing}; the collection metadata is damaged")
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe_encoder(self) -> str:
        rev = f", revision {self.encoder_revision}" if self.encoder_revision else ""
        fp = f", fingerprint {self.encoder_fingerprint[:12]}" if self.encoder_fingerprint else ""
        head = ", multivector (MaxSim)" if self.multivector else ""
        return f"'{self.encoder_name}'{rev}{fp}, {self.dim}-d{head}, {self.distance}"


def check_compatible(stored: CollectionMetadata, expected: CollectionMetadata, where: str) -> None:
    """Raise :class:`CollectionMismatchError` when ``expected`` cannot use the ``stored`` collection.

    Dimension and distance must match. The encoder must be the same: by fingerprint
    when both sides have one (so the same weights under another path are accepted and
    retrained weights under the same name are not), else by name and revision.
    """
    problems = []
    if stored.dim != expected.dim:
        problems.append(f"dimension {stored.dim} != {expected.dim}")
    if stored.multivector != expected.multivector:
        kinds = {True: "multivector (late interaction, MaxSim)", False: "single-vector"}
        problems.append(f"{kinds[stored.multivector]} collection != {kinds[expected.multivector]} encoder")
    if stored.distance != expected.distance:
        problems.append(f"distance '{stored.distance}' != '{expected.distance}'")
    if stored.encoder_fingerprint and expected.encoder_fingerprint:
        if stored.encoder_fingerprint != expected.encoder_fingerprint:
            problems.append("encoder weights differ (fingerprint mismatch)")
    else:
        if stored.encoder_name != expected.encoder_name:
            problems.append(f"encoder '{stored.encoder_name}' != '{expected.encoder_name}'")
        if (stored.encoder_revision or None) != (expected.encoder_revision or None):
            problems.append(f"revision {stored.encoder_revision!r} != {expected.encoder_revision!r}")
    if problems:
        raise CollectionMismatchError(
            f"{where} was built with encoder {stored.describe_encoder()}, but the current encoder is "
            f"{expected.describe_encoder()} ({'; '.join(problems)}). Vectors from different encoders are not "
            f"comparable: use the encoder the collection was built with (encoder.name_or_path / revision in the "
            f"config), or index into another collection (--collection NAME)."
        )


# ----------------------------------------------------------------------------------------
# Payload filters: one small dict form, translated by each backend.
# ----------------------------------------------------------------------------------------

_RANGE_OPS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Condition:
    """One normalised payload condition: ``op`` is ``"eq"``, ``"any"`` or ``"range"``."""

    key: str
    op: str
    value: Any


def parse_filter(spec: Mapping[str, Any] | None) -> list[Condition]:
    """Validate a payload filter and return its conditions (all must hold).

    The form, documented in ``docs/store.md``::

        {"wikidata_id": "Q42"}                    # field equals a value (str, int or bool)
        {"wikidata_id": ["Q42", "Q5"]}            # field equals any of the values
        {"section_index": {"gte": 1, "lt": 5}}    # numeric range (gt / gte / lt / lte)

    Several keys combine with AND. A list-valued payload field matches when any of its
    elements matches (Qdrant semantics).
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a payload filter must be a mapping of field -> condition, got {type(spec).__name__}")
    conditions = []
    for key, value in spec.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"payload filter: field names must be non-empty strings, got {key!r}")
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_RANGE_OPS))
            if unknown or not value:
                raise ConfigError(
                    f"payload filter '{key}': a mapping condition is a range with keys {list(_RANGE_OPS)}, got {dict(value)}"
                )
            for op, bound in value.items():
                if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                    raise ConfigError(f"payload filter '{key}.{op}': range bounds must be numbers, got {bound!r}")
            conditions.append(Condition(key, "range", {op: float(b) for op, b in value.items()}))
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"payload filter '{key}': the list of values is empty")
            kinds = {_match_kind(key, v) for v in value}
            if len(kinds) > 1:
                raise ConfigError(f"payload filter '{key}': values must all be strings or all integers, got {list(value)}")
            conditions.append(Condition(key, "any", list(value)))
        else:
            _match_kind(key, value)
            conditions.append(Condition(key, "eq", value))
    return conditions


def _match_kind(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    raise ConfigError(
        f"payload filter '{key}': can match strings, integers or booleans, got {value!r} "
        f"(use {{'gte': ..., 'lte': ...}} for numeric ranges)"
    )


# ----------------------------------------------------------------------------------------
# The interface.
# ----------------------------------------------------------------------------------------


class VectorStore(abc.ABC):
    """A collection of passage vectors with payloads, behind one small API.

    Ids are passage ids (strings); the store maps them to UUID5 point ids and keeps the
    passage id in the payload (``passage_id``), so searches and fetches give back
    :class:`~ret2vqa.passage.Passage` objects with their id. Vectors are float32 arrays of
    the collection's dimension. Instances are context managers; :meth:`close` releases
    files and connections.

    Each operation is declared once here and implemented once per backend. Opening is
    shared too: :meth:`open` reads the collection's metadata, checks it against the
    encoder about to use it, or creates the collection, through three small hooks
    (:meth:`_connect`, :meth:`_read_metadata`, :meth:`_create`) and :meth:`_attach`.
    """

    backend: str = ""

    # Opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, config: StoreConfig, expect: CollectionMetadata | None = None, create: bool = False,
             **kwargs: Any) -> "VectorStore":
        """Open the collection of ``config``; create it from ``expect`` when ``create`` and absent.

        With ``expect`` (the metadata of the encoder about to use it), an existing
        collection must have been built with the same encoder, dimension and distance
        (:func:`check_compatible`), else :class:`CollectionMismatchError`. Without
        ``create`` a missing collection raises :class:`CollectionNotFoundError`. Extra
        ``kwargs`` go to the backend's :meth:`_connect` (e.g. ``client=``).
        """
        where = config.describe()
        handle = cls._connect(config, **kwargs)
        stored = cls._read_metadata(config, handle)
        if stored is not None:
            metadata = CollectionMetadata.from_dict(stored, where=where)
            if expect is not None:
                check_compatible(metadata, expect, where)
        elif create:
            if expect is None:
                raise ValueError("creating a collection needs the encoder metadata (expect=...)")
            metadata = CollectionMetadata(**{**expect.to_dict(), "config": {"store": config.snapshot(), **expect.config}})
            cls._create(config, handle, metadata)
        else:
            raise CollectionNotFoundError(
                f"no {where}{cls._others(config, handle)}; build it first with "
                f"`ret2vqa index build --config CONFIG --kb FILE --format FORMAT`"
            )
        return cls._attach(config, metadata, handle)

    @classmethod
    def _connect(cls, config: StoreConfig, **kwargs: Any) -> Any:
        """What the other hooks need to reach the collection (a client, a directory)."""
        return None

    @classmethod
    @abc.abstractmethod
    def _read_metadata(cls, config: StoreConfig, handle: Any) -> Mapping[str, Any] | None:
        """The stored :class:`CollectionMetadata` as a mapping, or ``None`` if the collection does not exist."""

    @classmethod
    @abc.abstractmethod
    def _create(cls, config: StoreConfig, handle: Any, metadata: CollectionMetadata) -> None:
        """Create the (absent) collection with ``metadata``."""

    @classmethod
    @abc.abstractmethod
    def _attach(cls, config: StoreConfig, metadata: CollectionMetadata, handle: Any) -> "VectorStore":
        """The open store over an existing collection."""

    @classmethod
    def _others(cls, config: StoreConfig, handle: Any) -> str:
        """A hint naming the collections that do exist, for the not-found message."""
        return ""

    # Data --------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def metadata(self) -> CollectionMetadata:
        """How the collection was built (encoder, dimension, distance, config)."""

    @property
    def dim(self) -> int:
        return self.metadata.dim

    @abc.abstractmethod
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert or overwrite passages ``ids`` with ``vectors`` (N, dim), or (N, T, dim) in a multivector
        collection, and ``payloads``."""

    @abc.abstractmethod
    def search(
        self, vector: np.ndarray, k: int = 10, filter: Mapping[str, Any] | None = None, hnsw_ef: int | None = None,
        exact: bool = False,
    ) -> list[Passage]:
        """The ``k`` passages most similar to ``vector``, best first (with ``score``), optionally filtered.

        ``vector``: (dim,), or a (T, dim) token set in a multivector collection (MaxSim score)."""

    @abc.abstractmethod
    def search_batch(
        self, vectors: np.ndarray, k: int = 10, filter: Mapping[str, Any] | None = None, hnsw_ef: int | None = None,
        exact: bool = False,
    ) -> list[list[Passage]]:
        """:meth:`search` for each query of ``vectors`` (N, dim), or (N, T, dim) in a multivector collection."""

    @abc.abstractmethod
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Exact number of points (matching ``filter`` when given)."""

    @abc.abstractmethod
    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Passage]:
        """The stored passages ``ids`` that exist, in the order asked (with ``vector`` when asked)."""

    @abc.abstractmethod
    def sample(self, limit: int, with_vectors: bool = True) -> list[Passage]:
        """Up to ``limit`` stored passages, in the store's own order (with ``vector`` when asked).

        What an integrity check reads back (``ret2vqa index verify``): reading them touches
        the vector and payload files, so damage shows as :class:`CollectionDamagedError`.
        """

    @abc.abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Delete passages ``ids`` (absent ids are ignored)."""

    @abc.abstractmethod
    def create_payload_index(self, field_name: str) -> None:
        """Index payload field ``field_name`` as a keyword, for fast filtered search."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every update so far durable (after it returns, a crash loses nothing)."""

    @abc.abstractmethod
    def optimize(self) -> None:
        """Build/merge the search index now (blocking); searches stay correct without it."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """Count, metadata, backend and index status, as plain JSON-friendly data."""

    @abc.abstractmethod
    def load_state(self, name: str) -> dict[str, Any] | None:
        """A small JSON record kept with the collection (e.g. indexing progress), or ``None``."""

    @abc.abstractmethod
    def save_state(self, name: str, data: Mapping[str, Any] | None) -> None:
        """Durably replace state record ``name`` (``None`` deletes it); atomic."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the collection (files, locks, connections)."""

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Shared argument checks and conversions ----------------------------------------------

    def _check_batch(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None
    ) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        ids = list(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        multi = self.metadata.multivector
        if vectors.ndim in (2, 3) and vectors.ndim != (3 if multi else 2) and vectors.shape[:1] == (len(ids),):
            raise CollectionMismatchError(
                f"upsert: vectors of shape {vectors.shape} do not fit a {self._kind()} collection "
                f"(expected ({len(ids)}, {'T, ' if multi else ''}{self.dim}))"
            )
        if vectors.ndim != (3 if multi else 2) or vectors.shape[0] != len(ids):
            shape = f"({len(ids)}, {'T, ' if multi else ''}{self.dim})"
            raise ValueError(f"upsert: expected vectors of shape {shape}, got {vectors.shape}")
        if vectors.shape[-1] != self.dim:
            raise CollectionMismatchError(
                f"upsert: vectors have dimension {vectors.shape[-1]} but the collection holds {self.dim}-d vectors"
            )
        if not np.isfinite(vectors).all():
            bad = int(np.flatnonzero(~np.isfinite(vectors.reshape(len(ids), -1)).all(axis=1))[0])
            raise ValueError(f"upsert: the vector of passage {ids[bad]!r} contains NaN or infinity")
        if payloads is None:
            payloads = [{} for _ in ids]
        payloads = list(payloads)
        if len(payloads) != len(ids):
            raise ValueError(f"upsert: {len(ids)} ids but {len(payloads)} payloads")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise InputError(f"upsert: passage id {dup!r} appears twice in one batch")
        full = []
        for pid, payload in zip(ids, payloads):
            p = dict(payload)
            p[PASSAGE_ID_KEY] = pid
            full.append(p)
        return ids, vectors, full

    def _kind(self) -> str:
        return "multivector (MaxSim)" if self.metadata.multivector else "single-vector"

    def _check_query(self, vector: np.ndarray) -> np.ndarray:
        """Queries as (N, dim), or (N, T, dim) in a multivector collection."""
        v = np.asarray(vector, dtype=np.float32)
        want = 3 if self.metadata.multivector else 2
        if v.ndim == want - 1:
            v = v[None]
        if v.ndim != want or v.shape[-1] != self.dim:
            raise CollectionMismatchError(
                f"search: query vectors have shape {tuple(np.shape(vector))} but the collection holds "
                f"{self.dim}-d vectors ({self._kind()}: one query is {'(T, ' if want == 3 else '('}{self.dim}))"
            )
        return v

    @staticmethod
    def _passage(point: Any, with_vector: bool = False) -> Passage:
        """A backend's scored or fetched point (``.id``, ``.payload``, ``.score``?, ``.vector``?) as a Passage."""
        vector = getattr(point, "vector", None) if with_vector else None
        return Passage.from_payload(point.payload, id=point.id, score=getattr(point, "score", None),
                                    vector=None if vector is None else np.asarray(vector, dtype=np.float32))
