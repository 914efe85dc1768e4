"""``ret2vqa serve`` through a real uvicorn server on a free loopback port, with the tiny models.

Each endpoint's shape, parity with ``ask --json``, micro-batching, and every bad input
the issue names (oversized, truncated, non-image, bomb, path traversal, unknown fields,
missing question and image, wrong API key) with its status code while a concurrent good
request still succeeds. The browser test of the page is in ``test_serve_browser.py``.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from PIL import Image

from rag.demo import DEMO_DIR
from rag.serve.config import ServeConfig

from conftest import REPO_ROOT, tiny_pipeline_config

ROCKET = DEMO_DIR / "images" / "rocket.jpg"
KEY = "s3cret-key-for-tests"


@contextmanager
def running_server(pipeline, config: ServeConfig, app=None):
    """``create_app(pipeline, config)`` (or ``app``) on uvicorn in a thread, on a free loopback port: yields its
    base URL."""
    import uvicorn

    from rag.serve.app import create_app

    app = app if app is not None else create_app(pipeline, config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def base_url(tiny_pipeline):
    config = ServeConfig(max_upload_mb=1, max_pixels=4_000_000, max_batch_size=8, max_wait_ms=20)
    with running_server(tiny_pipeline, config) as url:
        yield url


@pytest.fixture()
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def image_part(path=ROCKET, name=None, data=None, content_type="image/jpeg"):
    return {"image": (name or path.name, data if data is not None else path.read_bytes(), content_type)}


def good_answer(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as c:
        return c.post("/v1/answer", files=image_part(), data={"question": "Which satellite did this rocket launch?"})


# ------------------------------------------------------------------ shapes


def test_answer_has_the_ask_json_shape_and_parity(client, tiny_pipeline):
    question = "Which satellite did this rocket launch in February 2015?"
    r = client.post("/v1/answer", files=image_part(), data={"question": question, "k": "3"})
    assert r.status_code == 200, r.text
    got = r.json()
    # what `ret2vqa ask --json` prints: Pipeline.answer(...).to_dict()
    expected = tiny_pipeline.answer(question, str(ROCKET), k=3).to_dict()
    assert set(expected) <= set(got)
    for key in ("question", "answer", "raw_text", "passages_used", "prompt_tokens"):
        assert got[key] == expected[key], key
    assert got["image"] == "rocket.jpg"  # the upload's name (ask prints the path it was given)
    assert set(got["timings_ms"]) == set(expected["timings_ms"]) == {"encode_ms", "search_ms", "generate_ms", "total_ms"}
    assert [p["id"] for p in got["passages"]] == [p["id"] for p in expected["passages"]]
    for g, e in zip(got["passages"], expected["passages"]):
        assert {k: g[k] for k in e if k != "score"} == {k: v for k, v in e.items() if k != "score"}
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)
        assert g["snippet"] and e["text"].startswith(g["snippet"].rstrip("…"))
        assert g["image_url"] == (f"/v1/passages/{g['id']}/image" if e["image"] else None)
    assert got["server"]["batch_size"] >= 1 and got["server"]["queue_ms"] >= 0


def test_question_only_and_image_only(client):
    r = client.post("/v1/answer", data={"question": "Which tower was built for the 1889 World's Fair?", "k": "2"})
    assert r.status_code == 200 and len(r.json()["passages"]) == 2 and r.json()["image"] is None
    r = client.post("/v1/answer", files=image_part(DEMO_DIR / "images" / "coffee.jpg"))
    assert r.status_code == 200 and r.json()["question"] == "What is this?", r.text


def test_search_shape(client, tiny_pipeline):
    r = client.post("/v1/search", files=image_part(), data={"question": "rocket launch", "k": "4"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) >= {"question", "passages", "timings_ms", "server"} and "answer" not in data
    assert set(data["timings_ms"]) == {"encode_ms", "search_ms", "total_ms"}
    expected = tiny_pipeline.retrieve("rocket launch", str(ROCKET), k=4)
    assert [p["id"] for p in data["passages"]] == [p.id for p in expected]
    scores = [p["score"] for p in data["passages"]]
    assert scores == sorted(scores, reverse=True)


def test_passage_image_is_served(client):
    r = client.get("/v1/passages/dscovr/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == ROCKET.read_bytes()


def test_passage_images_of_a_collection_indexed_without_image_root_come_from_the_kb_folder(tmp_path):
    """The readers resolved relative image paths against the KB file's folder, so the server (and the
    LangChain adapters, through the same rag.ingest.indexer.collection_image_root) look there too."""
    import json
    import shutil

    from rag.ingest.indexer import build_index, collection_image_root
    from rag.pipeline import Pipeline

    kb_dir = tmp_path / "kb"
    (kb_dir / "photos").mkdir(parents=True)
    shutil.copy(ROCKET, kb_dir / "photos" / "rocket.jpg")
    kb = kb_dir / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(row) for row in [
        {"id": "falcon", "text": "Falcon 9 is a launch vehicle.", "image": "photos/rocket.jpg"},
        {"id": "plain", "text": "A passage without an image."}]) + "\n")
    cfg = tiny_pipeline_config(tmp_path / "store")
    cfg.ingest.image_root = None
    build_index(cfg, kb, "jsonl", show_progress=False)
    with Pipeline.from_config(cfg, load_generator=False) as pipeline:
        assert collection_image_root(pipeline.store) == kb_dir.resolve()
        assert collection_image_root(pipeline.store, str(DEMO_DIR)) == DEMO_DIR.resolve()  # the config wins
        with running_server(pipeline, ServeConfig()) as url:
            served = httpx.get(f"{url}/v1/passages/falcon/image")
            assert served.status_code == 200 and served.content == ROCKET.read_bytes()
            assert httpx.get(f"{url}/v1/passages/plain/image").status_code == 404


def test_health_ready_metrics_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and all(ready.json()["checks"].values())
    client.post("/v1/search", data={"question": "coffee"})
    text = client.get("/metrics").text
    assert "# TYPE ret2vqa_requests_total counter" in text
    assert 'ret2vqa_requests_total{route="/v1/search",method="POST",status="200"}' in text
    assert 'ret2vqa_request_duration_seconds_bucket{route="/v1/search",le="+Inf"}' in text
    assert "ret2vqa_batch_size_count" in text and "ret2vqa_ready 1" in text
    info = client.get("/v1/info").json()
    assert info["tiny"] is True and info["encoder"] == "tiny-random/clip" and info["k"] == 3
    schema = client.get("/openapi.json").json()
    assert {"/v1/answer", "/v1/search", "/v1/passages/{passage_id}/image", "/healthz", "/readyz",
            "/metrics"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/answer"]["post"]["requestBody"]["content"]


def test_page_is_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = [page.text, client.get("/static/app.js").text, client.get("/static/app.css").text]
    for text in assets:
        assert "http://" not in text.replace('"http://', "") and "//cdn" not in text and "fonts.googleapis" not in text
    assert 'src="/static/app.js"' in page.text and 'name="viewport"' in page.text


def test_concurrent_requests_are_batched_without_changing_answers(base_url, tiny_pipeline):
    questions = [f"What is shown here? ({i})" for i in range(8)]

    def ask(q):
        with httpx.Client(base_url=base_url, timeout=60) as c:
            return c.post("/v1/answer", files=image_part(), data={"question": q}).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, questions))
    assert max(r["server"]["batch_size"] for r in results) > 1
    for q, r in zip(questions, results):
        assert r["answer"] == tiny_pipeline.answer(q, str(ROCKET)).answer


def test_retrieval_of_the_next_batch_runs_while_the_current_one_generates(tiny_pipeline, monkeypatch):
    """Retrieval and generation are separate stages: a search is answered while an answer is still
    being generated (and the answer then arrives, with the prompts built by the retrieval stage)."""
    generator = tiny_pipeline.generator
    original = generator.generate
    generating, release = threading.Event(), threading.Event()
    seen_prompts = []

    def generate(requests, **kwargs):  # holds the generation stage until the search has been answered
        seen_prompts.append(kwargs.get("prompts"))
        generating.set()
        assert release.wait(30)
        return original(requests, **kwargs)

    monkeypatch.setattr(generator, "generate", generate)
    with running_server(tiny_pipeline, ServeConfig(max_batch_size=8, max_wait_ms=5)) as url, \
            ThreadPoolExecutor(2) as pool:
        answering = pool.submit(httpx.post, f"{url}/v1/answer", data={"question": "Which rocket is this?"},
                                files=image_part(), timeout=60)
        assert generating.wait(30)
        found = httpx.post(f"{url}/v1/search", data={"question": "Which rocket is this?"}, timeout=30)
        assert found.status_code == 200 and found.json()["passages"] and not answering.done()
        release.set()
        answered = answering.result()
    assert answered.status_code == 200 and answered.json()["answer"] == tiny_pipeline.answer(
        "Which rocket is this?", str(ROCKET)).answer
    assert seen_prompts and seen_prompts[0] is not None and len(seen_prompts[0]) == 1


def test_recent_peak_remembers_the_active_clients_for_its_window():
    from rag.serve.batcher import RecentPeak

    now = [100.0]
    peak = RecentPeak(window_s=1.0, clock=lambda: now[0])
    for value in (1, 8, 3, 0):  # 8 requests in the server, then all answered
        peak.update(value)
    assert peak.value == 8
    now[0] += 0.5  # the next half-window still remembers it
    peak.update(2)
    assert peak.value == 8
    now[0] += 0.5  # a whole window later it is forgotten, but not what is still held
    assert peak.value == 2
    now[0] += 5.0
    assert peak.value == 2
    peak.update(0)
    now[0] += 1.0
    assert peak.value == 0


def _gathering(batcher, busy_s, late_s=None, kind="answer"):
    """The retrieval stage gathering a batch while the generator answers another client's job for
    ``busy_s`` (on a real event loop); that client sends its next job ``late_s`` seconds in
    (``None``: it goes away). Returns the gathered jobs' questions and how long gathering took."""
    import asyncio

    def submit(question, kind="answer"):
        batcher.incoming += 1  # as the HTTP layer does: received, then queued
        batcher.incoming -= 1
        return batcher.submit(kind, question, None, 3)

    async def scenario():
        loop = asyncio.get_running_loop()
        generating = submit("other client")
        batcher._queue.get()  # retrieved and handed to the generator
        batcher._generating = True

        def answered():
            batcher._generating = False
            generating.future.set_result(None)

        loop.call_later(busy_s, answered)
        if late_s is not None:
            loop.call_later(late_s, submit, "other client, next")
        submit("this client", kind)
        start = time.perf_counter()
        batch, _ = await loop.run_in_executor(None, batcher._gather, batcher._queue.get())
        return [job.question for job in batch], time.perf_counter() - start

    return asyncio.run(scenario())


def test_a_lone_client_never_waits_for_a_batch():
    import asyncio

    from rag.serve.batcher import Batcher

    async def scenario():
        batcher = Batcher(None, max_batch_size=8, max_wait_ms=500)
        batcher.incoming += 1
        batcher.incoming -= 1
        batcher.submit("answer", "q", None, 3)
        start = time.perf_counter()
        batch, _ = await asyncio.get_running_loop().run_in_executor(None, batcher._gather, batcher._queue.get())
        return len(batch), time.perf_counter() - start

    size, took = asyncio.run(scenario())
    assert size == 1 and took < 0.25


def test_a_batch_waits_for_the_active_clients_from_when_the_generator_is_free():
    """Two clients out of step: one's job waits while the generator answers the other's, and both are
    batched together when the other's next job arrives soon after (the two fall back in step)."""
    from rag.serve.batcher import Batcher

    questions, took = _gathering(Batcher(None, max_batch_size=8, max_wait_ms=300), busy_s=0.6, late_s=0.75)
    assert questions == ["this client", "other client, next"]  # waited past max_wait while the generator was busy
    assert 0.7 < took < 1.0

    # the other client goes away: at most max_wait after the generator is free
    questions, took = _gathering(Batcher(None, max_batch_size=8, max_wait_ms=100), busy_s=0.3)
    assert questions == ["this client"] and 0.35 < took < 0.9


def test_a_search_does_not_wait_for_the_generator():
    from rag.serve.batcher import Batcher

    questions, took = _gathering(Batcher(None, max_batch_size=8, max_wait_ms=100), busy_s=2.0, kind="search")
    assert questions == ["this client"] and took < 0.6  # max_wait from its arrival, not from the generator


# ------------------------------------------------------------------ bad input, each beside a good request


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")  # 144 megapixels in a few kilobytes
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = ROCKET.read_bytes()
    return data[: len(data) // 2]


def _chunks(total: int):
    """A multipart body with one huge file part, sent chunked (no Content-Length: only streaming can stop it)."""
    yield (b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
           b"Content-Type: image/jpeg\r\n\r\n")
    for _ in range(total // 65536 + 1):
        yield b"\xff" * 65536


BAD_REQUESTS = {
    "oversized": (413, "too_large", lambda c: c.post("/v1/answer", files=image_part(data=b"\xff" * (1024 * 1024 + 70_000)),
                                                      data={"question": "q"})),
    "oversized_streamed": (413, "too_large", lambda c: c.post(
        "/v1/answer", content=_chunks(3 * 1024 * 1024),
        headers={"content-type": "multipart/form-data; boundary=xyz"})),
    "truncated": (422, "corrupt_image", lambda c: c.post("/v1/answer", files=image_part(data=_truncated_jpeg()))),
    "non_image": (415, "unsupported_image", lambda c: c.post(
        "/v1/answer", files=image_part(name="notes.jpg", data=b"GIF? no, just text\n" * 20))),
    "bomb": (413, "too_many_pixels", lambda c: c.post("/v1/answer", files=image_part(name="b.png", data=_bomb_png(),
                                                                                       content_type="image/png"))),
    "path_traversal": (404, "not_found", lambda c: c.get("/v1/passages/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image")),
    "path_traversal_id": (404, "not_found", lambda c: c.get("/v1/passages/..%5C..%5Cetc%5Cpasswd/image")),
    "server_path": (422, "bad_image_field", lambda c: c.post("/v1/answer", data={"image": "/etc/passwd",
                                                                                 "question": "q"})),
    "unknown_field": (422, "unknown_field", lambda c: c.post("/v1/answer", data={"question": "q", "imag": "x"})),
    "missing_question_and_image": (422, "missing_input", lambda c: c.post("/v1/answer", data={"k": "2"})),
    "bad_k": (422, "bad_k", lambda c: c.post("/v1/answer", data={"question": "q", "k": "-1"})),
    "not_a_form": (415, "unsupported_media_type", lambda c: c.post("/v1/answer", json={"question": "q"})),
    "wrong_method": (405, "method_not_allowed", lambda c: c.get("/v1/answer")),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_json_error_while_a_good_request_succeeds(name, base_url, client):
    status, code, send = BAD_REQUESTS[name]
    with ThreadPoolExecutor(1) as pool:
        good = pool.submit(good_answer, base_url)
        try:
            r = send(client)
        except httpx.TransportError:  # the server may close an oversized stream before the client finished
            assert name == "oversized_streamed"
            r = None
        assert good.result().status_code == 200
    if r is not None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error"]["code"] == code and body["error"]["message"] and "Traceback" not in r.text
    assert client.get("/readyz").status_code == 200


def test_api_key_and_request_timeout(tiny_pipeline):
    config = ServeConfig(api_key=KEY, request_timeout_s=0.001)
    with running_server(tiny_pipeline, config) as url, httpx.Client(base_url=url, timeout=60) as c:
        for headers in ({}, {"Authorization": "Bearer wrong-key-123"}, {"X-API-Key": KEY[:-1]}):
            r = c.post("/v1/search", data={"question": "coffee"}, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.get("/healthz").status_code == 200  # health and the page stay open
        r = c.post("/v1/answer", data={"question": "coffee"}, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"  # 1 ms is not enough to answer


def test_requests_that_time_out_are_not_counted_as_active_clients(tiny_pipeline):
    """A request that gives up (504) is settled in the batcher too, so that batches do not keep waiting
    for clients that are gone."""
    from rag.serve.app import create_app
    from rag.serve.batcher import ACTIVE_WINDOW_S

    config = ServeConfig(request_timeout_s=0.001, max_wait_ms=5)
    app = create_app(tiny_pipeline, config)
    with running_server(tiny_pipeline, config, app=app) as url, ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda q: httpx.post(f"{url}/v1/answer", data={"question": q}, timeout=60),
                                ["coffee", "rocket", "horse", "coins"]))
        assert all(r.status_code == 504 for r in replies)
        batcher = app.state.batcher
        deadline = time.monotonic() + 30
        while (batcher.active.value or batcher.depth) and time.monotonic() < deadline:
            time.sleep(ACTIVE_WINDOW_S / 4)
        assert batcher.active.value == 0 and batcher.incoming == 0


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("RET2VQA_API_KEY", "from-the-env")
    assert ServeConfig().resolved_api_key() == "from-the-env"
    assert ServeConfig(api_key="from-the-file").resolved_api_key() == "from-the-file"


# ------------------------------------------------------------------ units: the image root, decoding, config


def test_passage_images_cannot_escape_the_root(tmp_path):
    from rag.serve.files import confined_image_path

    root = tmp_path / "kb"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "images" / "ok.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.jpg")
    (root / "images" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    assert confined_image_path(root, "images/ok.jpg") == (root / "images" / "ok.jpg").resolve()
    for stored in ("../secret.jpg", "images/../../secret.jpg", str(tmp_path / "secret.jpg"), "images/link.jpg",
                   "..\\secret.jpg", "images/missing.jpg", "", None, "images", "C:/x.jpg"):
        assert confined_image_path(root, stored) is None, stored
    assert confined_image_path(None, "images/ok.jpg") is None


def test_decoding_guards():
    from rag.serve.errors import ApiError
    from rag.serve.uploads import decode_image

    ok = decode_image(ROCKET.read_bytes(), ServeConfig())
    assert ok.mode == "RGB" and ok.size == Image.open(ROCKET).size
    bomb = _bomb_png()
    with pytest.raises(ApiError) as exc:  # Pillow's own guard, even with a generous pixel limit
        decode_image(bomb, ServeConfig(max_pixels=10**9))
    assert exc.value.status == 413
    with pytest.raises(ApiError) as exc:  # an allowed-type list that excludes the upload's type
        decode_image(ROCKET.read_bytes(), ServeConfig(image_types=["png"]))
    assert exc.value.status == 415


def test_serve_config_is_checked():
    from rag.config import PipelineConfig
    from ret2vqa.errors import ConfigError

    with pytest.raises(ConfigError, match=r"serve.max_upload_mb"):
        PipelineConfig.from_dict({"serve": {"max_upload_mb": 0}}, where="c.yaml")
    with pytest.raises(ConfigError, match=r"serve.image_types"):
        PipelineConfig.from_dict({"serve": {"image_types": ["heic"]}}, where="c.yaml")
    with pytest.raises(ConfigError, match=r"serve.prot: unknown field"):
        PipelineConfig.from_dict({"serve": {"prot": 1}}, where="c.yaml")
    cfg = PipelineConfig.from_dict({"serve": {"port": 9000, "cors_origins": ["https://example.org"],
                                              "api_key": "12345678"}})
    assert cfg.serve.port == 9000 and cfg.serve.max_upload_mb == 10 and cfg.serve.cors_origins == ["https://example.org"]
    assert "api_key" not in cfg.to_dict()["serve"]


# ------------------------------------------------------------------ the command: start, answer, graceful stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_command_answers_and_shuts_down_gracefully(tmp_path):
    import yaml

    from rag.demo import KB_FILE
    from rag.ingest.indexer import build_index

    cfg = tiny_pipeline_config(tmp_path / "store")
    build_index(cfg, KB_FILE, "jsonl", show_progress=False)
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict()))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RET2VQA_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--config", str(config_file), "--port",
                             str(port)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        headers = {"X-API-Key": KEY}
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/answer", files=image_part(), data={"question": f"q{i}"},
                                   headers=headers, timeout=60) for i in range(4)]
            while "ret2vqa_in_flight_requests 5" not in httpx.get(f"{url}/metrics").text:  # 4 + this one
                assert time.monotonic() < deadline and not any(f.done() for f in futures)
                time.sleep(0.005)
            proc.send_signal(signal.SIGTERM)  # in-flight requests still get their answers
            answered = [f.result() for f in futures]
        assert all(r.status_code == 200 for r in answered), [r.text for r in answered]
        assert proc.wait(60) == 0
        out = proc.stdout.read()
        assert "serving on http://127.0.0.1:" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_failing_request_gets_a_json_500_and_the_others_in_its_batch_their_answers(tiny_pipeline, monkeypatch):
    generator = tiny_pipeline.generator
    original = generator.generate

    def generate(requests, **kwargs):  # a bug triggered by one question, inside a batch
        requests = list(requests)
        if any(getattr(r, "question", "") == "trigger the bug" for r in requests):
            raise RuntimeError("a bug, not the user's fault")
        return original(requests, **kwargs)

    monkeypatch.setattr(generator, "generate", generate)
    config = ServeConfig(max_batch_size=8, max_wait_ms=200)
    with running_server(tiny_pipeline, config) as url, ThreadPoolExecutor(4) as pool:
        def ask(question):
            return httpx.post(f"{url}/v1/answer", data={"question": question}, timeout=60)

        futures = [pool.submit(ask, q) for q in ("first good one", "trigger the bug", "second good one")]
        first, bad, second = (f.result() for f in futures)
    assert first.status_code == 200 and second.status_code == 200
    assert bad.status_code == 500 and bad.json()["error"]["code"] == "internal"
    assert "Traceback" not in bad.text and "a bug" not in bad.text


def test_cors_is_off_unless_configured(tiny_pipeline):
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with running_server(tiny_pipeline, ServeConfig()) as url:
        r = httpx.options(f"{url}/v1/answer", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with running_server(tiny_pipeline, ServeConfig(cors_origins=["https://example.org"])) as url:
        r = httpx.options(f"{url}/v1/answer", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://example.org"
        r = httpx.options(f"{url}/v1/answer", headers={**preflight, "Origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
