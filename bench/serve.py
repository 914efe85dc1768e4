"""``ret2vqa serve`` under load: 1, 8 and 32 concurrent clients over loopback vs sequential in-process answers.

::

    python bench/serve.py                                  # tiny config (rag/configs/tiny.yaml), ~2 min on 2 cores
    python bench/serve.py --requests 96 --json OUT.json
    python bench/serve.py --config configs/cpu.yaml --requests 32   # real models (downloads once)
    python bench/serve.py --client httpx                   # clients that are httpx.AsyncClient

The bundled demo knowledge base is indexed with the config's encoder into a temporary
store. Then, in one run:

* ``in-process``: the same questions (demo photos + questions, cycled) answered one at a
  time with :meth:`rag.pipeline.Pipeline.answer` in this process: the floor of per-request work;
* ``server``: ``ret2vqa serve`` started as its own process on a free loopback port, driven by
  ``C`` concurrent clients (each posting the photo and question as a multipart form and
  waiting for the answer before sending the next) for ``--requests`` requests per level.
  The default load generator encodes the requests before the clock starts and sends them
  over raw keep-alive connections, as load generators such as wrk do, so that the client's
  own CPU time (the machine has two cores, shared with the server) stays out of the
  server's figure; ``--client httpx`` drives it with ``httpx.AsyncClient`` instead, which
  adds what a Python caller spends per request.

Every level is measured in ``--rounds`` rounds (default 5), the levels interleaved within a
round, and a level's requests/s and its ratio to the one-client figure are the medians over
the rounds (each round's ratio against that round's own one-client figure): the speed of a
shared machine drifts by 10% or more over seconds, and a ratio of two measurements taken a
minute apart would mostly measure the drift. On the 2-core development machine single
rounds' ratios at 8 clients spread over about +-0.4 around their median, and so did the
median of three rounds from run to run; the median of five moved by about +-0.3.

The server runs with the caller's environment (the bench's own defaults, such as
``TOKENIZERS_PARALLELISM=false`` for this process, are not passed on), as ``ret2vqa serve``
would be started by hand.

Every arm answers the same questions with the same ``k`` and ``max_new_tokens``. It prints
a table (requests/s, p50 and p95 latency, mean micro-batch size) and the ratio of each
level's throughput to the one-client server figure; the target for the tiny config on a
2-core machine is >= 3x at 8 clients. ``--json`` writes ``{"setting", "rows", "ratios",
"target"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO_8 = 3.0


def demo_queries(n: int) -> list[tuple[str, str, bytes]]:
    """``n`` (question, image file name, image bytes) from the demo questions, cycled."""
    from rag.demo import DEMO_DIR, QUESTIONS_FILE

    rows = [json.loads(line) for line in QUESTIONS_FILE.read_text().splitlines() if line.strip()]
    items = [(r["question"], Path(r["image"]).name, (DEMO_DIR / r["image"]).read_bytes()) for r in rows]
    return [items[i % len(items)] for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[index]


def row(arm: str, clients: int, latencies_s: list[float], wall_s: float, batch_sizes: list[int]) -> dict:
    """One measurement (a level in one round); :func:`combine` turns a level's rounds into a table row."""
    return {"arm": arm, "clients": clients, "requests": len(latencies_s), "req_per_s": len(latencies_s) / wall_s,
            "latencies_s": latencies_s, "batch_sizes": batch_sizes}


def in_process(pipeline, queries, k: int) -> dict:
    """The queries answered one at a time by ``pipeline`` in this process (images decoded as the server does)."""
    from PIL import Image

    from ret2vqa.images import load_image

    latencies, tokens = [], []
    start = time.perf_counter()
    for question, _, data in queries:
        t = time.perf_counter()
        result = pipeline.answer(question, load_image(Image.open(io.BytesIO(data))), k=k)  # decoded, as served
        latencies.append(time.perf_counter() - t)
        tokens.append(result.prompt_tokens)
    wall = time.perf_counter() - start
    return row("in-process (sequential)", 1, latencies, wall, []) | {"mean_prompt_tokens": statistics.fmean(tokens)}


def combine(rounds: list[dict], one_client: list[float] | None) -> dict:
    """One level's row from its rounds: the median round's requests/s and ratio to that round's one-client
    server figure (``None``: not measured); latency percentiles, batch size and model time over all of the
    level's requests."""
    latencies = [x for r in rounds for x in r["latencies_s"]]
    batches = [b for r in rounds for b in r["batch_sizes"]]
    combined = {
        "arm": rounds[0]["arm"], "clients": rounds[0]["clients"], "requests": sum(r["requests"] for r in rounds),
        "req_per_s": statistics.median(r["req_per_s"] for r in rounds),
        "req_per_s_rounds": [round(r["req_per_s"], 2) for r in rounds],
        "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
        "mean_batch": statistics.fmean(batches) if batches else 1.0,
        "x_one_client_rounds": [round(r["req_per_s"] / one, 3) for r, one in zip(rounds, one_client or [])],
    }
    combined["x_one_client"] = statistics.median(combined["x_one_client_rounds"]) if one_client else None
    if all("model_ms_per_req" in r for r in rounds):
        combined["model_ms_per_req"] = statistics.fmean(r["model_ms_per_req"] for r in rounds)
    if "mean_prompt_tokens" in rounds[0]:
        combined["mean_prompt_tokens"] = statistics.fmean(r["mean_prompt_tokens"] for r in rounds)
    return combined


class Tally:
    """The latencies, micro-batch sizes and errors of one level's requests, from either load generator."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.batches: list[int] = []
        self.errors: list[str] = []

    def record(self, started: float, status: int, body: bytes) -> None:
        self.latencies.append(time.perf_counter() - started)
        if status != 200:
            self.errors.append(f"{status} {body[:200]!r}")
        else:
            self.batches.append(json.loads(body)["server"]["batch_size"])

    def row(self, clients: int, wall_s: float) -> dict:
        if self.errors:
            raise SystemExit(f"{len(self.errors)} requests failed, e.g. {self.errors[0]}")
        return row("server", clients, self.latencies, wall_s, self.batches)


def multipart_request(host: str, question: str, name: str, data: bytes, k: int) -> bytes:
    """One whole ``POST /v1/answer`` HTTP/1.1 request (headers and multipart body), encoded once ahead of time."""
    boundary = uuid.uuid4().hex
    fields = [f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode()
              for field, value in (("question", question), ("k", str(k)))]
    image = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
             f"Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    body = b"".join([*fields, image, f"--{boundary}--\r\n".encode()])
    head = (f"POST /v1/answer HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a ``Content-Length`` (what the server sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    length = next((int(v) for h, v in headers.items() if h.strip().lower() == "content-length"), None)
    if length is None:
        raise SystemExit(f"the server answered without a Content-Length: {head[:300]!r}")
    return status, await reader.readexactly(length)


async def drive_lean(url: str, queries, clients: int, k: int) -> dict:
    """``drive`` with a load generator that costs the server's CPU as little as possible (as wrk or oha do).

    Each client holds one keep-alive connection and sends requests encoded before the clock
    starts; it reads each response's status and JSON body (for the batch size). On a 2-core
    machine the client shares the CPU with the server: httpx spends about half a millisecond of
    Python per request building and parsing, which then counts against the server's figure.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    requests = iter([multipart_request(f"{host}:{port}", question, name, data, k) for question, name, data in queries])
    tally = Tally()

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for request in requests:
                t = time.perf_counter()
                writer.write(request)
                tally.record(t, *await read_response(reader))
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return tally.row(clients, time.perf_counter() - start)


async def drive(url: str, queries, clients: int, k: int) -> dict:
    """``clients`` concurrent httpx clients, each posting a question and waiting for its answer before the next
    (``--client httpx``: what a Python application calling the server spends per request is in the figures)."""
    import httpx

    tally = Tally()
    todo = iter(queries)

    async def client(http: httpx.AsyncClient) -> None:
        for question, name, data in todo:
            t = time.perf_counter()
            r = await http.post("/v1/answer", files={"image": (name, data, "image/jpeg")},
                                data={"question": question, "k": str(k)})
            tally.record(t, r.status_code, r.content)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return tally.row(clients, wall)


def model_seconds(url: str) -> dict[str, float]:
    """The server's cumulative seconds per pipeline stage (its /metrics), to split latency into model vs the rest."""
    import httpx

    stages: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("ret2vqa_stage_seconds_total{"):
            name = line.split('stage="', 1)[1].split('"', 1)[0]
            stages[name] = float(line.rsplit(" ", 1)[1])
    return stages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config_file: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    """``ret2vqa serve`` on ``port`` as its own process with environment ``env``, once it is ready."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--config", str(config_file), "--port",
                             str(port), "--log-level", "warning"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not become ready")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "rag" / "configs" / "tiny.yaml"),
                        help="pipeline YAML (default: the tiny config)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default 64)")
    parser.add_argument("--client", choices=["lean", "httpx"], default="lean",
                        help="load generator: lean (requests encoded ahead, raw keep-alive connections; the default) "
                             "or httpx")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of every level, interleaved; figures are the rounds' medians (default 5)")
    parser.add_argument("--warmup", type=int, default=8, help="requests before each measurement (default 8)")
    parser.add_argument("-k", type=int, help="passages per question (default: the config's retrieval.k)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="changes",
                        help="config changes for every arm, e.g. serve.max_batch_size=16 "
                             "generator.context_token_budget=256")
    parser.add_argument("--workdir", help="where the store goes (default: a temporary directory)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the server gets the caller's environment (offline as above, no API key), not this process's own defaults below
    server_env = {key: value for key, value in os.environ.items() if key != "RET2VQA_API_KEY"}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import yaml

    from rag.config import PipelineConfig
    from rag.demo import DEMO_DIR, KB_FILE
    from rag.ingest.indexer import build_index

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ret2vqa-bench-serve-"))
    changes = {}
    for item in args.changes:
        key, _, value = item.partition("=")
        changes[key] = yaml.safe_load(value)
    cfg = PipelineConfig.from_yaml(args.config).override({
        "store.backend": "edge", "store.path": str(workdir / "store"), "store.collection": "demo",
        "ingest.image_root": str(DEMO_DIR), **changes})
    k = args.k if args.k is not None else cfg.retrieval.k
    if cfg.serve.torch_threads:
        import torch

        torch.set_num_threads(cfg.serve.torch_threads)  # the in-process arm runs like the server
    build_index(cfg, KB_FILE, "jsonl", show_progress=False)
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    queries = demo_queries(args.requests)

    from PIL import Image

    from rag.pipeline import Pipeline
    from rag.serve.batcher import ACTIVE_WINDOW_S
    from ret2vqa.images import load_image

    levels = [("in-process (sequential)", 1)] + [("server", clients) for clients in args.clients]
    measured: dict[tuple[str, int], list[dict]] = {level: [] for level in levels}
    # the server holds its store's lock: the in-process arm answers from a copy of it
    shutil.copytree(workdir / "store", workdir / "store-in-process", dirs_exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(config_file, port, server_env)
    try:
        with Pipeline.from_config(cfg.override({"store.path": str(workdir / "store-in-process")})) as pipeline:
            for question, _, data in queries[: args.warmup]:
                pipeline.answer(question, load_image(Image.open(io.BytesIO(data))), k=k)
            drive_clients = drive_lean if args.client == "lean" else drive
            for _ in range(args.rounds):  # the levels interleaved, so that each round's ratios see the same machine
                measured[levels[0]].append(in_process(pipeline, queries, k))
                for clients in args.clients:
                    time.sleep(2 * ACTIVE_WINDOW_S)  # the server forgets the previous level's clients
                    asyncio.run(drive_clients(url, demo_queries(max(args.warmup, clients)), clients, k))  # warm-up
                    before = model_seconds(url)
                    result = asyncio.run(drive_clients(url, queries, clients, k))
                    after = model_seconds(url)
                    # wall time of the model stages per request: what batching amortises (the rest is HTTP,
                    # decoding, waiting)
                    result["model_ms_per_req"] = (after.get("total", 0) - before.get("total", 0)) * 1000 / len(queries)
                    measured[("server", clients)].append(result)
    finally:
        proc.terminate()
        proc.wait(60)

    one_client = [r["req_per_s"] for r in measured.get(("server", 1), [])]
    sequential = [r["req_per_s"] for r in measured[levels[0]]]
    rows = []
    for level in levels:
        combined = combine(measured[level], one_client or None)
        combined["x_in_process"] = statistics.median(
            r["req_per_s"] / seq for r, seq in zip(measured[level], sequential))
        rows.append(combined)
    print(f"ret2vqa serve: {Path(args.config).name} {' '.join(args.changes)}, k={k}, max_new_tokens="
          f"{cfg.generator.max_new_tokens if cfg.generator else '-'}, context_token_budget="
          f"{cfg.generator.context_token_budget if cfg.generator else '-'}, {args.requests} requests per level "
          f"x {args.rounds} rounds, max_batch_size={cfg.serve.max_batch_size}, max_wait_ms={cfg.serve.max_wait_ms:g}, "
          f"{args.client} client, {os.cpu_count()} CPUs")
    print("req/s and the ratios are the medians of the rounds; latencies over all requests")
    print(f"{'arm':<24} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'batch':>6} {'model ms/req':>12} "
          f"{'x 1 client':>10} {'x in-proc':>9}")
    for r in rows:
        x1 = f"{r['x_one_client']:.2f}" if r["x_one_client"] else "-"
        model = f"{r['model_ms_per_req']:.1f}" if "model_ms_per_req" in r else "-"
        print(f"{r['arm']:<24} {r['clients']:>7} {r['req_per_s']:>8.2f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['mean_batch']:>6.2f} {model:>12} {x1:>10} {r['x_in_process']:>9.2f}")
    print(f"mean prompt: {rows[0]['mean_prompt_tokens']:.0f} tokens")
    ratios = {str(r["clients"]): r["x_one_client"] for r in rows if r["arm"] == "server"}
    at8 = ratios.get("8")
    if at8 is not None:
        by_round = next(r["x_one_client_rounds"] for r in rows if r["arm"] == "server" and r["clients"] == 8)
        print(f"throughput at 8 clients = {at8:.2f}x the one-client server figure (rounds: "
              f"{', '.join(f'{x:.2f}' for x in by_round)}; target >= {TARGET_RATIO_8:g}x: "
              f"{'met' if at8 >= TARGET_RATIO_8 else 'NOT met'})")
    if args.json:
        result = {
            "setting": {"config": args.config, "changes": changes, "k": k, "requests": args.requests, "clients": args.clients,
                        "rounds": args.rounds, "client": args.client,
                        "serve": {"max_batch_size": cfg.serve.max_batch_size, "max_wait_ms": cfg.serve.max_wait_ms,
                                  "torch_threads": cfg.serve.torch_threads},
                        "max_new_tokens": cfg.generator.max_new_tokens if cfg.generator else None,
                        "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
            "rows": rows, "ratios": ratios, "target": {"clients": 8, "ratio": TARGET_RATIO_8, "met": (
                at8 is not None and at8 >= TARGET_RATIO_8)},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
