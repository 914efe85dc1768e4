"""``serve.generation_workers``: the generator in worker processes (rag/serve/workers.py), with the tiny models."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from generator import GenerationRequest
from rag.demo import DEMO_DIR
from rag.serve.config import ServeConfig
from rag.serve.workers import GenerationWorkers, WorkerDiedError, worker_cores
from ret2vqa.errors import ConfigError, InputError

from test_serve import ROCKET, image_part, running_server

COINS = DEMO_DIR / "images" / "coins.jpg"


@pytest.fixture(scope="module")
def workers(tiny_pipeline):
    with GenerationWorkers(tiny_pipeline.config.generator, 2, torch_threads=1) as pool:
        yield pool


@pytest.fixture()
def one_thread():
    """The in-process answers computed with the workers' intra-op thread count (conftest restores torch's)."""
    import torch

    torch.set_num_threads(1)


def _requests(tiny_pipeline, n):
    photos = [Image.open(ROCKET), None, Image.open(COINS)]
    questions = [f"Which year is this from? ({i})" for i in range(n)]
    hits = tiny_pipeline.retrieve_batch([(q, photos[i % 3]) for i, q in enumerate(questions)], k=3)
    return [GenerationRequest(question=q, image=photos[i % 3], passages=h) for i, (q, h) in
            enumerate(zip(questions, hits))]


def test_workers_answer_as_the_generator_does_in_process(workers, tiny_pipeline, one_thread):
    requests = _requests(tiny_pipeline, 5)  # split 3 + 2, photos and text-only questions mixed
    got = workers.generate(requests)
    expected = tiny_pipeline.generator.generate(requests)
    assert [r.raw_text for r in got] == [r.raw_text for r in expected]
    assert [(r.answer, r.prompt, r.prompt_tokens, r.passages_used) for r in got] == \
           [(r.answer, r.prompt, r.prompt_tokens, r.passages_used) for r in expected]
    assert workers.generate(requests[:1])[0].raw_text == expected[0].raw_text  # a single request: one worker
    assert workers.generate([]) == []
    assert workers.image_side == tiny_pipeline.generator.prompt_builder.image_side


def test_a_worker_error_keeps_its_type_and_the_workers_keep_serving(workers, tiny_pipeline):
    requests = _requests(tiny_pipeline, 3)
    with pytest.raises(InputError, match="the question is empty"):  # raised by the prompt builder in a worker
        workers.generate(requests[:2] + [GenerationRequest(question="   ")])
    assert len(workers.generate(requests)) == 3
    with pytest.raises(ValueError, match="build the prompts themselves"):
        workers.generate(requests, prompts=[None] * 3)


def test_a_killed_worker_fails_its_batch_and_is_restarted(workers, tiny_pipeline, one_thread):
    requests = _requests(tiny_pipeline, 4)
    expected = [r.raw_text for r in tiny_pipeline.generator.generate(requests)]
    victim = workers._workers[1].process
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert not workers.alive
    assert [r.raw_text for r in workers.generate(requests)] == expected  # restarted before the batch
    assert workers.alive and workers._workers[1].process.pid != victim.pid

    held = workers._workers[0]  # a worker that dies while the server waits for its reply
    os.kill(held.process.pid, signal.SIGKILL)
    held.process.join(10)
    with pytest.raises(WorkerDiedError, match="generation worker 0 died while generating"):
        held.receive()
    assert [r.raw_text for r in workers.generate(requests)] == expected


def test_a_part_that_cannot_be_sent_fails_the_batch_without_leaving_a_stale_reply(workers, tiny_pipeline,
                                                                                 one_thread, monkeypatch):
    requests = _requests(tiny_pipeline, 4)
    expected = [r.raw_text for r in tiny_pipeline.generator.generate(requests)]

    def broken_pipe(part):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(workers._workers[1], "send", broken_pipe)  # worker 0 still gets, and answers, its part
    with pytest.raises(WorkerDiedError, match="generation worker 1 died before its part"):
        workers.generate(requests)
    monkeypatch.undo()
    assert [r.raw_text for r in workers.generate(requests[2:] + requests[:2])] == expected[2:] + expected[:2]


def test_a_batch_is_split_in_contiguous_parts_of_nearly_equal_size():
    from rag.serve.workers import split_evenly

    assert split_evenly(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert split_evenly(list(range(4)), 3) == [[0, 1], [2], [3]]
    assert split_evenly([7], 4) == [[7]]
    assert split_evenly([], 2) == []


def test_worker_cores_pin_only_when_every_worker_has_cores_of_its_own():
    cores = sorted(os.sched_getaffinity(0))
    threads, pinned = worker_cores(len(cores), 1)
    assert threads == 1 and pinned == [[c] for c in cores]
    threads, pinned = worker_cores(1, None)
    assert threads == len(cores) and pinned == [cores]
    assert worker_cores(len(cores) + 1, 1) == (1, None)  # more workers than cores: left to the OS
    assert worker_cores(1, len(cores) + 1) == (len(cores) + 1, None)


def test_serve_config_checks_generation_workers():
    assert ServeConfig(generation_workers=2).generation_workers == 2
    with pytest.raises(ConfigError, match="generation_workers: must be >= 0"):
        ServeConfig(generation_workers=-1)


def test_server_with_generation_workers_batches_and_matches_ask(workers, tiny_pipeline, one_thread):
    from rag.pipeline import Pipeline

    pipeline = Pipeline(tiny_pipeline.encoder, tiny_pipeline.store, workers, tiny_pipeline.config)
    questions = ["What is shown here" + " really" * i + "?" for i in range(6)]  # prompts of different lengths
    expected = {q: tiny_pipeline.answer(q, str(ROCKET)).to_dict() for q in questions}
    with running_server(pipeline, ServeConfig(max_batch_size=8, max_wait_ms=50)) as url:
        def ask(q):
            return httpx.post(f"{url}/v1/answer", files=image_part(), data={"question": q}, timeout=60).json()

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(ask, questions))
        bad = httpx.post(f"{url}/v1/answer", files=image_part(), data={"question": "x" * 5000}, timeout=60)
    assert max(r["server"]["batch_size"] for r in results) > 1
    for q, r in zip(questions, results):
        for key in ("answer", "raw_text", "passages_used", "prompt_tokens"):
            assert r[key] == expected[q][key], key
        assert [p["id"] for p in r["passages"]] == [p["id"] for p in expected[q]["passages"]]
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "question_too_long"


def test_open_serving_pipeline_starts_and_closes_the_workers(tmp_path, one_thread):
    from rag.components import build_generator
    from rag.demo import KB_FILE
    from rag.ingest.indexer import build_index
    from rag.serve.app import open_serving_pipeline

    from conftest import tiny_pipeline_config

    cfg = tiny_pipeline_config(tmp_path / "store").override({"serve.generation_workers": 1,
                                                             "serve.torch_threads": 1})
    build_index(cfg, KB_FILE, "jsonl", show_progress=False)
    pipeline = open_serving_pipeline(cfg)
    try:
        assert isinstance(pipeline.generator, GenerationWorkers) and pipeline.generator.count == 1
        answer = pipeline.answer("Which year is this from?", str(ROCKET))
        in_process = build_generator(cfg.generator).generate(
            [GenerationRequest("Which year is this from?", str(ROCKET), answer.passages)])[0]
        assert (answer.raw_text, answer.prompt_tokens) == (in_process.raw_text, in_process.prompt_tokens)
        processes = [w.process for w in pipeline.generator._workers]
    finally:
        pipeline.close()
    assert all(not p.is_alive() for p in processes)


def test_a_worker_that_cannot_load_its_model_raises_the_user_error(monkeypatch):
    from generator.config import GeneratorConfig
    from ret2vqa.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the workers inherit it
    with pytest.raises(UserError, match="model 'someone/not-a-model' is not available"):
        GenerationWorkers(GeneratorConfig(model="someone/not-a-model"), 1, torch_threads=1)


def test_errors_cross_with_their_own_type_or_their_nearest_picklable_one():
    from rag.serve.workers import _picklable
    from ret2vqa.errors import UserError
    from ret2vqa.hub import ModelUnavailableError

    assert type(_picklable(InputError("bad"))) is InputError
    assert str(_picklable(ConfigError("must be >= 1", "k"))) == "k: must be >= 1"
    original = ModelUnavailableError("a/b", None, "offline")
    crossed = _picklable(original)
    assert type(crossed) is UserError and str(crossed) == str(original)
