"""LangChain as its users use it: one test per problem of issue 13, on the tiny models and real stores.

1 async with options; 2 the image survives wrappers; 3 per-item errors and closed callbacks;
4 batching inside chains; 5 checked search options; 6 documents' payload fields and
absolute images; 7 messages/content blocks, input schema and tools, embed_image,
streaming and generation callbacks; 8 the VectorStore. Plus: a collection opened more
than once in a process, and a lock held by another process named as such.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.runnables import ConfigurableField

from generator.postprocess import postprocess_answer
from rag.demo import DEMO_DIR, KB_FILE
from rag.langchain import (
    ReT2Embeddings,
    ReT2Retriever,
    ReT2VectorStore,
    RetrieveSources,
    accepts_images,
    build_answer_chain,
    create_retriever_tool,
)
from ret2vqa.errors import ConfigError, InputError, StoreLockedError

from test_langchain_standard import write_config

IMAGE = str(DEMO_DIR / "images" / "rocket.jpg")
QUESTION = "Which satellite did this rocket launch?"


@pytest.fixture(scope="module")
def kb_config(tmp_path_factory) -> str:
    """The demo KB indexed into a store of this module (opened shared by the tests); the config file."""
    from rag.config import load_pipeline_config
    from rag.ingest.indexer import build_index

    root = tmp_path_factory.mktemp("lc-issue13")
    path = write_config(root / "tiny.yaml", {"backend": "edge", "path": str(root / "qdrant"), "collection": "kb"},
                        instruction="")
    build_index(load_pipeline_config(path), KB_FILE, "jsonl", show_progress=False)
    return path


@pytest.fixture(scope="module")
def retriever(kb_config):
    with ReT2Retriever.from_config(kb_config, k=4) as r:
        yield r


@pytest.fixture(scope="module")
def generator(kb_config):
    from rag.components import build_generator
    from rag.config import load_pipeline_config

    return build_generator(load_pipeline_config(kb_config).generator)


class Recorder(BaseCallbackHandler):
    """Every retriever / LLM callback, in order."""

    def __init__(self):
        self.events: list[tuple[str, Any]] = []

    def on_retriever_start(self, serialized, query, **kw):
        self.events.append(("retriever_start", query))

    def on_retriever_end(self, documents, **kw):
        self.events.append(("retriever_end", documents))

    def on_retriever_error(self, error, **kw):
        self.events.append(("retriever_error", error))

    def on_llm_start(self, serialized, prompts, **kw):
        self.events.append(("llm_start", prompts))

    def on_llm_new_token(self, token, **kw):
        self.events.append(("llm_token", token))

    def on_llm_end(self, response, **kw):
        self.events.append(("llm_end", response))

    def on_llm_error(self, error, **kw):
        self.events.append(("llm_error", error))

    def count(self, name: str) -> int:
        return sum(1 for event, _ in self.events if event == name)


def ids(docs: list[Document]) -> list[str]:
    return [d.id for d in docs]


# 1 ----------------------------------------------------------------------------------------------
async def test_1_async_calls_take_options(retriever):
    two = await retriever.ainvoke(QUESTION, k=2)
    assert ids(two) == ids(retriever.invoke(QUESTION, k=2)) and len(two) == 2
    rockets = await retriever.ainvoke(QUESTION, filter={"topic": "rocket"})
    assert rockets and {d.metadata["topic"] for d in rockets} == {"rocket"}
    batched = await retriever.abatch([QUESTION, {"question": QUESTION, "image": IMAGE}], k=2)
    assert [ids(d) for d in batched] == [ids(d) for d in retriever.batch([QUESTION, {"question": QUESTION,
                                                                                      "image": IMAGE}], k=2)]
    assert all(len(d) == 2 for d in batched)


# 2 ----------------------------------------------------------------------------------------------
def test_2_answer_chain_keeps_the_image_through_wrappers(retriever, generator):
    query = {"question": QUESTION, "image": IMAGE}
    multimodal = ids(retriever.invoke(query))
    assert multimodal != ids(retriever.invoke(QUESTION))
    wrapped = [
        retriever.with_config(tags=["mine"]),
        retriever.bind(k=4),
        retriever.configurable_fields(k=ConfigurableField(id="k")),
        retriever.configurable_fields(k=ConfigurableField(id="k")).with_config(run_name="r"),
    ]
    for runnable in wrapped:
        assert accepts_images(runnable)
        out = build_answer_chain(runnable, generator).invoke(query)
        assert ids(out["sources"]) == multimodal
    # the configurable field still works through the chain
    chain = build_answer_chain(retriever.configurable_fields(k=ConfigurableField(id="k")), generator)
    assert len(chain.invoke(query, config={"configurable": {"k": 2}})["sources"]) == 2


# 3 ----------------------------------------------------------------------------------------------
def test_3_batch_errors_are_per_item_and_every_run_ends(retriever, tmp_path):
    recorder = Recorder()
    inputs = ["coffee", {"question": "What is this?", "image": str(tmp_path / "missing.jpg")}, "",
              {"question": QUESTION, "image": IMAGE}]
    results = retriever.batch(inputs, config={"callbacks": [recorder]}, return_exceptions=True)
    assert isinstance(results[1], FileNotFoundError) and str(tmp_path / "missing.jpg") in str(results[1])
    assert isinstance(results[2], InputError)
    assert ids(results[0]) == ids(retriever.invoke("coffee"))
    assert ids(results[3]) == ids(retriever.invoke(inputs[3]))
    assert recorder.count("retriever_start") == 4
    assert recorder.count("retriever_end") == 2 and recorder.count("retriever_error") == 2

    recorder = Recorder()
    with pytest.raises(InputError):
        retriever.invoke("", config={"callbacks": [recorder]})
    assert recorder.count("retriever_start") == 1 and recorder.count("retriever_error") == 1
    with pytest.raises(FileNotFoundError):  # without return_exceptions the first error is raised...
        retriever.batch(inputs[:2], config={"callbacks": [recorder]})
    assert recorder.count("retriever_start") == 3  # ...after every started run has ended
    assert recorder.count("retriever_end") + recorder.count("retriever_error") == 3


def test_3_answer_chain_batch_errors_are_per_item(retriever, generator, tmp_path):
    chain = build_answer_chain(retriever, generator)
    good = {"question": QUESTION, "image": IMAGE}
    results = chain.batch([good, {"question": "What?", "image": str(tmp_path / "missing.jpg")}, {"question": " "}],
                          return_exceptions=True)
    assert results[0] == chain.invoke(good)
    assert isinstance(results[1], FileNotFoundError) and isinstance(results[2], InputError)


# 4 ----------------------------------------------------------------------------------------------
def test_4_batching_survives_inside_chains(retriever, generator, monkeypatch):
    encoder = retriever.pipeline.encoder
    calls: list[int] = []
    real = encoder.encode_queries

    def counting(questions, *args, **kwargs):
        calls.append(len(questions))
        return real(questions, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode_queries", counting)
    inputs = [{"question": QUESTION, "image": IMAGE}, {"question": "Who is this?"}, "What is in the cup?"]
    answers = build_answer_chain(retriever, generator).batch(inputs)
    assert calls == [3] and len(answers) == 3
    calls.clear()
    # a user's own chain: RetrieveSources instead of a {"context": retriever, ...} dict step
    chain = RetrieveSources(retriever, key="context") | (lambda x: f"{len(x['context'])} passages for {x['question']}")
    assert chain.batch(inputs) == [f"4 passages for {q}" for q in (QUESTION, "Who is this?", "What is in the cup?")]
    assert calls == [3]


# 5 ----------------------------------------------------------------------------------------------
def test_5_search_options_are_honoured_or_refused(retriever, kb_config):
    with pytest.raises(ConfigError, match="kk"):
        retriever.invoke(QUESTION, kk=2)
    with pytest.raises(ConfigError, match="search_kwargs.fetchk"):
        retriever.invoke(QUESTION, search_kwargs={"fetchk": 2})
    with pytest.raises(ConfigError, match="search_type"):
        ReT2Retriever(pipeline=retriever.pipeline, search_type="semantic")
    with pytest.raises(ConfigError, match="score_threshold"):
        ReT2Retriever(pipeline=retriever.pipeline, search_type="similarity_score_threshold")
    with pytest.raises(ConfigError, match="filter"):
        retriever.invoke(QUESTION, filter="topic == rocket")

    assert len(ReT2Retriever(pipeline=retriever.pipeline, search_kwargs={"k": 2}).invoke(QUESTION)) == 2
    assert len(retriever.invoke(QUESTION, search_kwargs={"k": 1})) == 1
    top = retriever.invoke(QUESTION, k=10)
    mmr = retriever.invoke(QUESTION, search_type="mmr", k=3, fetch_k=10, lambda_mult=0.0)
    assert len(mmr) == 3 and set(ids(mmr)) <= set(ids(top)) and ids(mmr) != ids(top)[:3]
    scores = [d.metadata["score"] for d in top]
    cut = (scores[2] + scores[3]) / 2
    thresholded = retriever.invoke(QUESTION, k=10, search_type="similarity_score_threshold", score_threshold=cut)
    assert ids(thresholded) == ids(top)[:3]
    # langchain-qdrant's spelling of a metadata filter names the same field
    assert ids(retriever.invoke(QUESTION, filter={"metadata.topic": "coffee"})) == \
        ids(retriever.invoke(QUESTION, filter={"topic": "coffee"}))
    assert {d.metadata["topic"] for d in retriever.invoke(QUESTION, filter={"metadata.topic": "coffee"})} == {"coffee"}


# 6 ----------------------------------------------------------------------------------------------
def test_6_documents_carry_payload_fields_and_absolute_images(retriever, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # somewhere else than the store, the KB and the images
    docs = retriever.invoke({"question": QUESTION, "image": IMAGE}, k=10)
    assert all({"topic", "source", "title", "id", "score"} <= set(d.metadata) for d in docs)
    with_images = [d for d in docs if "image" in d.metadata]
    assert with_images
    for doc in with_images:
        assert Path(doc.metadata["image"]).is_absolute() and Path(doc.metadata["image"]).is_file()
    # every metadata field is one a filter can use
    doc = docs[0]
    assert doc.id in ids(retriever.invoke(QUESTION, k=36, filter={"source": doc.metadata["source"],
                                                                  "topic": doc.metadata["topic"]}))


# 7 ----------------------------------------------------------------------------------------------
def test_7_messages_and_content_blocks_carry_the_image(retriever):
    expected = ids(retriever.invoke({"question": QUESTION, "image": IMAGE}))
    data = base64.b64encode(Path(IMAGE).read_bytes()).decode()
    messages = [
        HumanMessage(content=[{"type": "text", "text": QUESTION}, {"type": "image", "url": IMAGE}]),
        HumanMessage(content=[{"type": "text", "text": QUESTION}, {"type": "image", "url": f"file://{IMAGE}"}]),
        HumanMessage(content=[{"type": "text", "text": QUESTION},
                              {"type": "image", "base64": data, "mime_type": "image/jpeg"}]),
        HumanMessage(content=[{"type": "text", "text": QUESTION},
                              {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}]),
    ]
    for message in messages:
        assert ids(retriever.invoke(message)) == expected
    assert ids(retriever.invoke([{"type": "text", "text": QUESTION}, {"type": "image", "path": IMAGE}])) == expected
    assert ids(retriever.invoke(HumanMessage(QUESTION))) == ids(retriever.invoke(QUESTION))
    with pytest.raises(InputError, match="one image"):
        retriever.invoke(HumanMessage(content=[{"type": "image", "url": IMAGE}, {"type": "image", "url": IMAGE}]))


def test_7_input_schema_and_tools_take_an_image(retriever, generator):
    for runnable in (retriever, build_answer_chain(retriever, generator)):
        schema = runnable.get_input_jsonschema()
        assert schema["type"] == "object" and {"question", "image"} <= set(schema["properties"])
    expected = ids(retriever.invoke({"question": QUESTION, "image": IMAGE}))

    tool = create_retriever_tool(retriever, "kb_search", "Search the knowledge base.",
                                 response_format="content_and_artifact")
    assert {"query", "image"} <= set(tool.args)
    message = tool.invoke({"type": "tool_call", "id": "1", "name": "kb_search",
                           "args": {"query": QUESTION, "image": IMAGE}})
    assert ids(message.artifact) == expected

    as_tool = retriever.as_tool(name="kb", description="Search the knowledge base.")
    assert {"question", "image"} <= set(as_tool.args)
    assert ids(as_tool.invoke({"question": QUESTION, "image": IMAGE})) == expected


def test_7_embed_image(retriever):
    embeddings = ReT2Embeddings.from_config(retriever.pipeline.config)
    vectors = embeddings.embed_image([IMAGE, str(DEMO_DIR / "images" / "horse.jpg")])
    assert len(vectors) == 2 and len(vectors[0]) == retriever.pipeline.encoder.embedding_dim
    direct = retriever.pipeline.encoder.encode_documents([None], images=[IMAGE])[0]
    np.testing.assert_allclose(vectors[0], direct, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_7_answers_stream_and_generation_is_traced(retriever, generator):
    chain = build_answer_chain(retriever, generator)
    query = {"question": QUESTION, "image": IMAGE}
    recorder = Recorder()
    chunks = list(chain.stream(query, config={"callbacks": [recorder]}))
    assert set(chunks[0]) == {"question", "sources"} and len(chunks) >= 2
    pieces = [c["answer"] for c in chunks[1:]]
    assert all(isinstance(p, str) and p for p in pieces)
    invoked = chain.invoke(query)
    assert postprocess_answer("".join(pieces)) == invoked["answer"]
    assert ids(chunks[0]["sources"]) == ids(invoked["sources"])

    (start,) = [payload for event, payload in recorder.events if event == "llm_start"]
    assert QUESTION in start[0]
    assert recorder.count("llm_token") == len(pieces)
    (end,) = [payload for event, payload in recorder.events if event == "llm_end"]
    usage = end.llm_output["token_usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    recorder = Recorder()
    chain.batch([query, {"question": "Who is this?"}], config={"callbacks": [recorder]})
    assert recorder.count("llm_start") == recorder.count("llm_end") == 2


async def test_7_answers_astream(retriever, generator):
    chain = build_answer_chain(retriever, generator)
    query = {"question": QUESTION, "image": IMAGE}
    chunks = [c async for c in chain.astream(query)]
    sync = list(chain.stream(query))
    assert [dict(c) for c in chunks[1:]] == [dict(c) for c in sync[1:]]
    assert (await chain.ainvoke(query))["answer"] == chain.invoke(query)["answer"]


# 8 ----------------------------------------------------------------------------------------------
def test_8_vectorstore_over_our_collections(kb_config, tmp_path):
    with ReT2VectorStore.from_config(kb_config) as kb:  # the indexed KB, shared with the retriever fixture
        docs = kb.similarity_search(QUESTION, k=3, filter={"topic": "rocket"})
        assert len(docs) == 3 and {d.metadata["topic"] for d in docs} == {"rocket"}
        scored = kb.similarity_search_with_relevance_scores(QUESTION, k=3)
        assert all(0.0 <= s <= 1.0 for _, s in scored)
        assert kb.get_by_ids(["falcon-9"])[0].metadata["title"] == "Falcon 9"
        retriever = kb.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 8})
        assert isinstance(retriever, ReT2Retriever) and len(retriever.invoke({"question": QUESTION,
                                                                              "image": IMAGE})) == 2

    path = write_config(tmp_path / "tiny.yaml", {"path": str(tmp_path / "qdrant"), "collection": "mine"},
                        instruction="")
    with ReT2VectorStore.from_config(path) as store:
        images = [str(DEMO_DIR / "images" / name) for name in ("rocket.jpg", "horse.jpg", "coffee.jpg")]
        added = store.add_images(images, metadatas=[{"kind": "photo"}] * 3, ids=["rocket", "horse", "coffee"])
        store.add_texts(["A cup of coffee."], metadatas=[{"kind": "text"}], ids=["cup"])
        assert added == ["rocket", "horse", "coffee"]
        hit = store.similarity_search({"question": "", "image": images[1]}, k=1)[0]
        assert hit.id == "horse" and hit.metadata == {"kind": "photo", "image": images[1]}
        assert [d.id for d in store.similarity_search("x", k=4, filter={"kind": "text"})] == ["cup"]
        store.delete(["horse"])
        assert store.get_by_ids(["horse", "rocket"])[0].id == "rocket" and len(store.get_by_ids(["horse"])) == 0
        with pytest.raises(ConfigError, match="filterr"):
            store.similarity_search("x", filterr={"kind": "text"})
        with pytest.raises(InputError, match="reserved"):
            store.add_texts(["t"], metadatas=[{"text": "clash"}])


# sharing ----------------------------------------------------------------------------------------
def test_a_collection_opens_more_than_once_in_a_process(kb_config):
    from rag.config import load_pipeline_config
    from rag.store import open_store, shared_count

    store_config = load_pipeline_config(kb_config).store
    base = shared_count(store_config)  # the module's retriever may hold one
    first = ReT2Retriever.from_config(kb_config)
    second = ReT2Retriever.from_config(kb_config)
    assert shared_count(store_config) == base + 2
    assert first.pipeline.encoder is second.pipeline.encoder  # one copy of the weights
    first.close()
    first.close()  # idempotent
    assert len(second.invoke(QUESTION)) == 3
    second.close()
    assert shared_count(store_config) == base
    if base == 0:  # the last handle closed the collection: its lock is free again
        open_store(store_config).close()


def test_a_lock_held_by_another_process_names_it(tmp_path):
    from rag.config import load_pipeline_config
    from rag.store import open_store

    path = write_config(tmp_path / "tiny.yaml", {"path": str(tmp_path / "qdrant"), "collection": "held"})
    ReT2VectorStore.from_config(path).close()  # create it
    config = load_pipeline_config(path).store
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from rag.store import StoreConfig, open_store
            store = open_store(StoreConfig(path={config.path!r}, collection="held"))
            print("open", flush=True)
            sys.stdin.read()
            store.close()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError) as info:
            ReT2Retriever.from_config(path)
        assert info.value.holder_pid == holder.pid
        assert "another process" in str(info.value) and f"pid {holder.pid}" in str(info.value)
    finally:
        holder.communicate("", timeout=60)
    open_store(config).close()


def test_langchain_bench_counts_encoder_passes(tmp_path):
    """bench/langchain.py runs and reports where batching survives (a smoke run, not a measurement)."""
    import json

    out = tmp_path / "langchain.json"
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, str(root / "bench" / "langchain.py"), "--queries", "6", "--rounds", "1",
                          "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stderr
    calls = {row["variant"]: row["encoder_calls"] for row in json.loads(out.read_text())["variants"]}
    assert calls == {"invoke-loop": 6, "batch": 1, "abatch": 1, "dict-step": 6, "RetrieveSources": 1}
    assert "x invoke-loop" in run.stdout


def test_7_generator_stream_matches_generate(generator):
    from dataclasses import replace

    from generator import GenerationRequest
    from rag.components import build_generator

    request = GenerationRequest(question=QUESTION, image=IMAGE, passages=[])
    for gen in (generator, build_generator(replace(generator.config, num_beams=2))):  # beam search: one piece
        stream = gen.stream(request)
        pieces = list(stream)
        result = gen.generate([request])[0]
        assert "".join(pieces).strip() == stream.text.strip() == result.raw_text
        assert stream.prompt_tokens == result.prompt_tokens and stream.completion_tokens > 0
        if gen.config.num_beams > 1:
            assert len(pieces) <= 1
