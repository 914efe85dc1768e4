"""``ret2vqa serve``: the pipeline behind an HTTP API and a web page (FastAPI on uvicorn).

* :mod:`rag.serve.config`: the ``serve:`` config section (:class:`ServeConfig`);
* :mod:`rag.serve.app`: :func:`create_app` (the API v1, the page, health and metrics)
  around one loaded :class:`~rag.pipeline.Pipeline`, and :func:`serve` (uvicorn);
* :mod:`rag.serve.batcher`: micro-batching of concurrent requests;
* :mod:`rag.serve.uploads`: streamed, size-checked form parsing and safe image decoding;
* :mod:`rag.serve.files`: passage images confined to the collection's image root;
* :mod:`rag.serve.metrics`: request counters and latency histograms (Prometheus text).

Importing this package is cheap (config only); FastAPI loads with :mod:`rag.serve.app`.
See docs/serve.md.
"""

from .config import API_KEY_ENV, ServeConfig

__all__ = ["API_KEY_ENV", "ServeConfig"]
