"""``ret2vqa serve``: the pipeline as an HTTP API and a web page (FastAPI on uvicorn).

    ret2vqa serve --config configs/cpu.yaml [--host 127.0.0.1] [--port 8000] [--api-key KEY]
    ret2vqa demo --tiny && ret2vqa serve --demo --tiny        # then open http://127.0.0.1:8000/

The models are loaded and the store opened once, before the server binds its port, so a
bad config or a missing collection is an ``error:`` line (exit status 2), not a server
that answers 500s. SIGINT/SIGTERM shut down gracefully. See docs/serve.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the pipeline over HTTP: API v1 (/v1/answer, /v1/search) and a web page at /",
        description=(
            "Load the models and open the store once, then answer visual questions over HTTP: POST /v1/answer "
            "(multipart: image and/or question, optional k; the `ask --json` shape), POST /v1/search, "
            "GET /v1/passages/{id}/image, /healthz, /readyz, /metrics (Prometheus), OpenAPI at /docs, and a web "
            "page at / to drop a photo and ask. Concurrent requests are micro-batched. Settings: the config's "
            "`serve:` section (docs/serve.md); the flags below override it."
        ),
    )
    parser.add_argument("--config", help="pipeline YAML (default: configs/cpu.yaml, or configs/tiny.yaml with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (offline; answers meaningless)")
    parser.add_argument("--demo", action="store_true",
                        help="serve the demo knowledge base that `ret2vqa demo` built (the preset's collection, "
                             "with the bundled images)")
    parser.add_argument("--store", help="store directory (overrides store.path)")
    parser.add_argument("--host", help="address to bind (default: serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: serve.port, 8000; 0: any free port)")
    parser.add_argument("--api-key", help="require this key on /v1 requests (also: RET2VQA_API_KEY in the environment)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level (default info)")
    parser.set_defaults(func=run)


def serve_config(args: argparse.Namespace) -> tuple[Any, str]:
    """The pipeline config to serve and the file it came from, with the flags applied."""
    from rag.config import PipelineConfig, default_config_path

    config_path = args.config or str(default_config_path("tiny" if args.tiny else "cpu"))
    cfg = PipelineConfig.from_yaml(config_path)
    changes: dict[str, object] = {"serve.host": args.host, "serve.port": args.port, "serve.api_key": args.api_key,
                                  "store.path": args.store}
    if args.demo:
        from rag.demo import DEMO_DIR

        # The collection `ret2vqa demo` fills: the preset's own (or --store), as `demo` overrides it.
        changes.update({"store.backend": "edge" if args.store else None, "ingest.image_root": str(DEMO_DIR)})
    cfg = cfg.override(changes)
    if cfg.generator is None:
        from ret2vqa.errors import ConfigError

        raise ConfigError(f"{config_path}: serving answers needs a generator section", "generator")
    return cfg, config_path


def run(args: argparse.Namespace) -> int:
    cfg, _ = serve_config(args)
    if args.tiny:
        from rag.cli.demo import TINY_BANNER

        print(TINY_BANNER, file=sys.stderr, flush=True)

    from rag.serve.app import open_serving_pipeline, serve

    print(f"loading the models and opening {cfg.store.describe()} ...", file=sys.stderr, flush=True)
    pipeline = open_serving_pipeline(cfg)
    try:
        host = f"[{cfg.serve.host}]" if ":" in cfg.serve.host else cfg.serve.host
        print(f"serving on http://{host}:{cfg.serve.port}/  (API: /v1/answer, /v1/search; OpenAPI: /docs)",
              file=sys.stderr, flush=True)
        serve(pipeline, cfg.serve, log_level=args.log_level)
    finally:
        pipeline.close()
    return 0
