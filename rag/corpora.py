"""Benchmark corpora as collections: each corpus indexed once per encoder, into its own collection.

A retrieval benchmark (``ret2vqa eval m2kr`` / ``eval mbeir``) searches each task's own
passage corpus or candidate pool. :class:`CorpusCollections` gives every corpus (its
files, format and passage options) a collection of the configured store, filled with
:func:`rag.ingest.build_index` (so resumable: an interrupted build continues, a
finished one is skipped) and opened with :func:`rag.components.open_collection`. The
collection's name carries a digest of the encoder's weight fingerprint, the files and
the passage options: a rerun with the same encoder finds its collection, while another
encoder or another corpus gets a collection of its own instead of mixing into it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

from ret2vqa.errors import ConfigError

from .components import build_encoder, open_collection
from .config import PipelineConfig
from .ingest import IndexReport, build_index
from .store import VectorStore


class CorpusCollections:
    """Collections of one store, one per corpus, all filled and searched by one encoder.

    ``config``: the pipeline config (its ``encoder``, ``store`` and ``ingest`` sections;
    the encoder must be named). Passage texts are always kept in the payload (pseudo-recall
    reads them) and every passage with some text or an image is indexed
    (``ingest.min_chars: 1``). ``prefix`` starts every collection name.
    """

    def __init__(self, config: PipelineConfig, encoder: Any = None, prefix: str = "bench"):
        if encoder is None and not config.encoder.given:
            raise ConfigError("required: the encoder whose retrieval is evaluated", "encoder.name_or_path")
        self.config = config.override({"ingest.store_text": True, "ingest.min_chars": 1})
        self.encoder = encoder if encoder is not None else build_encoder(self.config.encoder)
        self.prefix = prefix
        self._built: dict[str, list[IndexReport]] = {}

    def _config(self, collection: str, image_root: str | Path | None = None) -> PipelineConfig:
        return self.config.override({"store.collection": collection,
                                     "ingest.image_root": None if image_root is None else str(image_root)})

    def collection_name(self, label: str, files: Sequence[str | Path], fmt: str,
                        image_root: str | Path | None = None) -> str:
        """``{prefix}-{label}-{digest}``: the digest names the encoder, the files and the passage options."""
        options = self._config("x", image_root).ingest.passage_options()
        key = json.dumps({"encoder": self.encoder.fingerprint, "format": fmt, "options": options,
                          "files": [str(Path(f).resolve()) for f in files]}, sort_keys=True, default=str)
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "corpus"
        return f"{self.prefix}-{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def build(self, label: str, files: Sequence[str | Path], fmt: str, image_root: str | Path | None = None,
              limit: int | None = None, show_progress: bool = True) -> tuple[str, list[IndexReport]]:
        """Index ``files`` (one KB format) into the corpus's collection; ``(collection, reports)``.

        Each file resumes on its own; one already complete costs only opening the collection.
        ``limit``: at most that many passages of each file (smoke runs; a later run continues).
        The same corpus asked again in this process returns the first reports.
        """
        name = self.collection_name(label, files, fmt, image_root)
        if name not in self._built:
            config = self._config(name, image_root)
            self._built[name] = [build_index(config, f, fmt, limit=limit, show_progress=show_progress,
                                             encoder=self.encoder) for f in files]
        return name, self._built[name]

    def open(self, collection: str) -> VectorStore:
        """The collection (built by :meth:`build`), checked against this encoder."""
        store, _ = open_collection(self._config(collection), self.encoder)
        return store

    def describe(self, collection: str) -> str:
        return self._config(collection).store.describe()
