"""The FastAPI application: API v1, the web page, health, readiness and metrics, around one loaded pipeline.

:func:`create_app` takes a :class:`~rag.pipeline.Pipeline` that is already loaded (models
once, store opened once) and a :class:`~rag.serve.config.ServeConfig`; :func:`serve`
runs it on uvicorn with a graceful shutdown (in-flight requests finish, queued batches
drain, then the store is closed).

Every error a client can cause is a 4xx JSON body ``{"error": {"code", "message",
"status"}}``; an unexpected failure is logged with its traceback and answered as a 500
with a generic message, never the traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ret2vqa.errors import ConfigError, InputError, UserError

from .batcher import Batcher, QueueFull
from .config import ServeConfig
from .errors import ApiError
from .files import IMAGE_MEDIA_TYPES, confined_image_path
from .metrics import Metrics
from .uploads import DEFAULT_QUESTION, parse_question_form, read_form

logger = logging.getLogger("rag.serve")

API_VERSION = "v1"
SNIPPET_CHARS = 300
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# The page loads nothing from elsewhere; say so to the browser too.
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {
                "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP...)"},
                "question": {"type": "string", "description": "the question (optional with an image)"},
                "k": {"type": "integer", "minimum": 0, "description": "passages to retrieve (default: retrieval.k)"},
            },
        }}},
    }
}


def _static(name: str) -> bytes:
    return resources.files("rag.serve").joinpath("static", name).read_bytes()


def passage_json(passage: Any) -> dict[str, Any]:
    """The ``ask --json`` passage object, plus ``snippet`` (the start of the text) and ``image_url``."""
    data = passage.to_dict()
    text = passage.text or ""
    data["snippet"] = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
    data["image_url"] = f"/{API_VERSION}/passages/{passage.id}/image" if passage.image and passage.id else None
    return data


def create_app(pipeline: Any, config: ServeConfig | None = None, *, close_pipeline: bool = False) -> FastAPI:
    """The app serving ``pipeline``. ``close_pipeline``: close it (its store) when the app shuts down."""
    from contextlib import asynccontextmanager

    config = config or pipeline.config.serve
    api_key = config.resolved_api_key()
    metrics = Metrics()
    batcher = Batcher(pipeline, config.max_batch_size, config.max_wait_ms, config.max_queue,
                      on_batch=metrics.observe_batch)
    images_root = pipeline.image_root()
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        batcher.start()
        state["ready"] = True
        logger.info("ready: %s", pipeline.config.store.describe())
        try:
            yield
        finally:  # uvicorn has stopped accepting and let in-flight requests finish
            state["ready"] = False
            await asyncio.get_running_loop().run_in_executor(None, batcher.stop, config.graceful_shutdown_s or None)
            if close_pipeline:
                pipeline.close()

    app = FastAPI(
        title="ret2vqa",
        version="1",
        summary="Knowledge-based visual question answering: ask about a photo, get an answer with its sources.",
        lifespan=lifespan,
    )
    app.state.pipeline = pipeline
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.serve_config = config

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])

    # ------------------------------------------------------------------ errors: JSON, never a traceback
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(ApiError(exc.status_code, code, str(exc.detail)).body(), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(ApiError(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}").body(),
                            status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(ApiError(500, "internal", "internal server error (logged on the server)").body(),
                            status_code=500)

    app.add_middleware(ObserveMiddleware, metrics=metrics, api_key=api_key)

    # ------------------------------------------------------------------ the API
    async def run_job(kind: str, request: Request) -> tuple[Any, Any]:
        if not state["ready"]:
            raise ApiError(503, "not_ready", "the server is starting or shutting down")
        batcher.incoming += 1
        received = False
        try:
            fields = await read_form(request, config)
            if fields.get("image"):  # decoding is C code that releases the GIL: off the event loop, it
                # overlaps the other requests' parsing and the models instead of delaying them
                form = await asyncio.get_running_loop().run_in_executor(None, parse_question_form, fields, config)
            else:
                form = parse_question_form(fields, config)
            k = form.k if form.k is not None else pipeline.config.retrieval.k
            if kind == "answer" and not form.question:
                form.question = DEFAULT_QUESTION
            batcher.incoming -= 1  # received: from here it counts as a job (or is refused)
            received = True
            try:
                job = batcher.submit(kind, form.question, form.image, k)
            except QueueFull as exc:
                raise ApiError(503, "busy", f"server busy: {exc}; retry later", {"Retry-After": "1"}) from None
            try:
                result = await asyncio.wait_for(asyncio.shield(job.future), config.request_timeout_s)
            except asyncio.TimeoutError:
                job.cancelled = True
                raise ApiError(504, "timeout", f"no answer within {config.request_timeout_s:g} s "
                                               f"(serve.request_timeout_s)") from None
            except (InputError, ConfigError) as exc:
                raise ApiError(422, "bad_input", str(exc)) from None
            except UserError as exc:
                raise ApiError(503, "unavailable", str(exc)) from None
            return form, result
        finally:
            if not received:
                batcher.incoming -= 1

    @app.post(f"/{API_VERSION}/answer", openapi_extra=_FORM_SCHEMA, tags=["v1"],
              summary="Answer a question about a photo from the knowledge base, with sources and timings")
    async def answer(request: Request) -> JSONResponse:
        """Multipart form: ``image`` (file) and/or ``question`` (image only: "What is this?"), optional ``k``. Returns the ``ret2vqa ask
        --json`` object (question, image, answer, raw_text, passages_used, prompt_tokens, passages with
        id/score/text/title/url/entity_id/image, timings_ms) plus each passage's ``snippet`` and
        ``image_url``, and ``server`` (batch size, time queued)."""
        form, result = await run_job("answer", request)
        answer = result.value
        answer.image = form.image_name
        data = answer.to_dict()
        data["passages"] = [passage_json(p) for p in answer.passages]
        data["server"] = {"batch_size": result.batch_size, "queue_ms": round(result.queue_ms, 1)}
        return JSONResponse(data)

    @app.post(f"/{API_VERSION}/search", openapi_extra=_FORM_SCHEMA, tags=["v1"],
              summary="Retrieve the top-k passages for a photo and/or question (no generation)")
    async def search(request: Request) -> JSONResponse:
        """Same form as ``/v1/answer``; returns ``{"question", "passages", "timings_ms", "server"}``
        (passages best first, with scores)."""
        form, result = await run_job("search", request)
        return JSONResponse({
            "question": form.question,
            "image": form.image_name,
            "passages": [passage_json(p) for p in result.value],
            "timings_ms": {k: round(v, 1) for k, v in result.timings.items()},
            "server": {"batch_size": result.batch_size, "queue_ms": round(result.queue_ms, 1)},
        })

    @app.get(f"/{API_VERSION}/passages/{{passage_id}}/image", tags=["v1"],
             summary="The image of a knowledge-base passage (served only from the collection's image root)")
    async def passage_image(passage_id: str) -> Response:
        if len(passage_id) > 512:
            raise ApiError(404, "not_found", "no such passage")
        found = await asyncio.get_running_loop().run_in_executor(None, batcher.lookup, passage_id)
        stored = found[0].image if found else None
        path = confined_image_path(images_root, stored)
        if path is None:
            raise ApiError(404, "not_found", f"passage {passage_id!r} has no image that can be served" if found
                           else f"no passage {passage_id!r}")
        return FileResponse(path, media_type=IMAGE_MEDIA_TYPES[path.suffix.lower()],
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.get(f"/{API_VERSION}/info", tags=["v1"], summary="Which models and collection this server answers from")
    async def info() -> dict[str, Any]:
        from ret2vqa.hub import is_tiny_model

        cfg = pipeline.config
        encoder = str(getattr(pipeline.encoder, "name_or_path", cfg.encoder.name_or_path))
        generator = cfg.generator.model if cfg.generator is not None else None
        return {
            "encoder": encoder, "generator": generator, "collection": cfg.store.describe(),
            "k": cfg.retrieval.k, "max_k": config.max_k, "max_upload_mb": config.max_upload_mb,
            "image_types": list(config.image_types),
            "tiny": bool(is_tiny_model(encoder) or (generator and is_tiny_model(generator))),
        }

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", tags=["ops"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Models loaded, store open, batch worker running")
    async def readyz() -> JSONResponse:
        checks = {"models": pipeline.encoder is not None and pipeline.generator is not None,
                  "store": pipeline.store is not None, "worker": batcher.alive, "accepting": state["ready"]}
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Request counts and latencies (Prometheus text format)")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(batcher.depth, state["ready"]),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ the page (offline: no external resources)
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise ApiError(404, "not_found", "no such file")
        return Response(_static(name), media_type=STATIC_FILES[name], headers=PAGE_HEADERS)

    return app


KNOWN_ROUTES = {"/", "/static/app.js", "/static/app.css", "/healthz", "/readyz", "/metrics", "/docs",
                "/openapi.json", f"/{API_VERSION}/answer", f"/{API_VERSION}/search",
                f"/{API_VERSION}/passages/{{id}}/image", f"/{API_VERSION}/info"}


def key_matches(headers: Any, expected: str) -> bool:
    """Whether the request carries ``expected`` (``X-API-Key`` or ``Authorization: Bearer``), compared in
    constant time so that response times do not leak how much of a guess was right."""
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class ObserveMiddleware:
    """Pure ASGI middleware: the API key check for ``/v1`` routes, and per-route counts and latencies."""

    def __init__(self, app: Any, metrics: Metrics, api_key: str | None):
        self.app = app
        self.metrics = metrics
        self.api_key = api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        start = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route = f"/{API_VERSION}/passages/{{id}}/image" if path.startswith(f"/{API_VERSION}/passages/") else path
        status = [500]

        async def send_observed(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            if (self.api_key is not None and path.startswith(f"/{API_VERSION}/") and method != "OPTIONS"
                    and not key_matches(Headers(scope=scope), self.api_key)):
                error = ApiError(401, "unauthorized", "missing or wrong API key (send 'Authorization: Bearer KEY' "
                                                      "or 'X-API-Key: KEY')", {"WWW-Authenticate": "Bearer"})
                await JSONResponse(error.body(), status_code=401, headers=error.headers)(scope, receive, send_observed)
                return
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.observe_request(route if route in KNOWN_ROUTES else "other", method, status[0],
                                         time.perf_counter() - start)


def open_serving_pipeline(config: Any) -> Any:
    """The :class:`~rag.pipeline.Pipeline` that ``ret2vqa serve`` answers from: encoder and store, and the
    generator in this process or, with ``serve.generation_workers`` > 0, in that many worker processes."""
    from rag.components import build_generation_workers
    from rag.pipeline import Pipeline

    workers = config.serve.generation_workers
    pipeline = Pipeline.from_config(config, load_generator=not workers)
    if workers:
        try:
            pipeline.generator = build_generation_workers(config.generator, workers, config.serve.torch_threads)
        except BaseException:
            pipeline.close()
            raise
    return pipeline


def serve(pipeline: Any, config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Serve ``pipeline`` on uvicorn until SIGINT/SIGTERM, then shut down gracefully and close it."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # A requested stop that finished its requests is a clean exit (status 0): uvicorn would
            # otherwise re-raise the signal once it has shut down.
            getattr(self, "_captured_signals", []).clear()

    config = config or pipeline.config.serve
    app = create_app(pipeline, config, close_pipeline=True)
    GracefulServer(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                                  timeout_graceful_shutdown=config.graceful_shutdown_s or None,
                                  server_header=False)).run()
