"""The ``serve:`` section of a pipeline config: how ``ret2vqa serve`` listens, what it accepts, how it batches.

Read with the rest of :class:`rag.config.PipelineConfig` (unknown or mistyped keys fail
naming the field); the values are checked on construction. Command-line flags
(``--host``, ``--port``, ``--api-key``) and the ``RET2VQA_API_KEY`` environment variable
are applied over it by ``ret2vqa serve`` through :meth:`PipelineConfig.override`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ret2vqa.config import ConfigError, at_least

#: Environment variable holding the API key (so that it need not be written in a file or a command line).
API_KEY_ENV = "RET2VQA_API_KEY"

#: Image formats Pillow can decode that the server accepts, by Pillow's format name (lower case).
KNOWN_IMAGE_TYPES = ("jpeg", "png", "webp", "gif", "bmp", "tiff")


@dataclass
class ServeConfig:
    """Listening address, request limits, security switches and micro-batching bounds of ``ret2vqa serve``.

    Uploads: a request body larger than ``max_upload_mb`` is refused while it streams in
    (413); only images Pillow identifies as one of ``image_types`` are decoded, and one
    whose width x height exceeds ``max_pixels`` is refused before its pixels are
    decoded (Pillow's own decompression-bomb guard stays on as well).

    ``api_key``: when set, every ``/v1`` request must send it (``Authorization: Bearer
    KEY`` or ``X-API-Key: KEY``); ``RET2VQA_API_KEY`` in the environment or
    ``--api-key`` set it without writing it in the file. ``cors_origins``: origins allowed
    to call the API from a browser page of another site (empty: CORS off).

    Batching: requests that arrive while others are being received or computed are
    answered together, up to ``max_batch_size`` per batch; a batch waits for as many
    requests as were in the server lately (the active clients; a lone client never waits),
    at most ``max_wait_ms`` counted from when the generator could take it (while the
    generator is busy with the previous batch, waiting costs nothing).
    ``request_timeout_s`` bounds how long a request waits for its answer (504 after it);
    ``max_queue`` bounds waiting requests (503 beyond it).
    ``torch_threads``: intra-op threads for the models (``None``: torch's default; tiny
    models are faster with 1, which leaves the other cores to the HTTP side); with
    generation workers, the threads of each worker.
    ``generation_workers``: 0 generates in the server process; ``N`` >= 1 in N worker processes,
    each with its own copy of the generator and its own GIL, a batch split among them
    (:mod:`rag.serve.workers`): for small models on CPU, whose generation is Python-bound.
    Memory grows by a generator per worker.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 10.0
    max_pixels: int = 40_000_000
    image_types: list[str] = field(default_factory=lambda: ["jpeg", "png", "webp", "gif", "bmp"])
    max_question_chars: int = 2000
    max_k: int = 50
    api_key: Optional[str] = None
    cors_origins: list[str] = field(default_factory=list)
    request_timeout_s: float = 120.0
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    torch_threads: Optional[int] = None
    generation_workers: int = 0
    graceful_shutdown_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("must be a host name or address, e.g. 127.0.0.1", "host")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"must be a TCP port (0-65535; 0: any free port), got {self.port}", "port")
        if not self.max_upload_mb > 0:
            raise ConfigError(f"must be > 0, got {self.max_upload_mb}", "max_upload_mb")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"must be > 0, got {self.request_timeout_s}", "request_timeout_s")
        at_least(self, 1, "max_pixels", "max_question_chars", "max_k", "max_batch_size", "max_queue", "torch_threads")
        at_least(self, 0, "max_wait_ms", "graceful_shutdown_s", "generation_workers")
        self.image_types = [str(t).lower() for t in self.image_types]
        if not self.image_types:
            raise ConfigError(f"must name at least one of {list(KNOWN_IMAGE_TYPES)}", "image_types")
        unknown = [t for t in self.image_types if t not in KNOWN_IMAGE_TYPES]
        if unknown:
            raise ConfigError(f"unknown image type {unknown[0]!r} (known: {', '.join(KNOWN_IMAGE_TYPES)})",
                              "image_types")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("must be at least 8 characters (or null: no key)", "api_key")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"must be '*' or an origin like https://example.org, got {origin!r}",
                                  "cors_origins")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def resolved_api_key(self) -> str | None:
        """The key in force: this config's, else ``RET2VQA_API_KEY`` from the environment (empty: none)."""
        return self.api_key or os.environ.get(API_KEY_ENV) or None
