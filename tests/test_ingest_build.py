"""Indexing the hand-written KB (E-VQA + Wiki formats, ~190 passages) with the tiny ReT-2 encoder
into a real embedded Qdrant Edge store: search, payloads, idempotence, resume, mismatches, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.config import PipelineConfig
from rag.ingest import STATE_NAME, IngestConfig, build_index, make_reader
from rag.store import CollectionMismatchError, StoreConfig, open_store
from rag.tiny_models import build_tiny_encoder
from ret2vqa.io import RowError
from retriever import EncoderConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVQA = FIXTURES / "kb" / "evqa_kb.json"
WIKI = FIXTURES / "kb" / "wiki_kb.jsonl"


@pytest.fixture(scope="module")
def encoder():
    return build_tiny_encoder("clip", seed=0)


def make_config(root: Path, collection: str = "kb", **ingest) -> PipelineConfig:
    return PipelineConfig(
        encoder=EncoderConfig(name_or_path="tiny-random/clip", batch_size=32),
        store=StoreConfig(path=str(root), collection=collection),
        ingest=IngestConfig(**{"batch_size": 32, "chunk_tokens": 16, **ingest}),
        generator=None,
    )


def build_both(config: PipelineConfig, encoder, **kwargs):
    evqa = build_index(config, EVQA, "evqa", encoder=encoder, show_progress=False, **kwargs)
    wiki = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False, **kwargs)
    return evqa, wiki


def all_passages(config: PipelineConfig):
    out = []
    for fmt, path in (("evqa", EVQA), ("infoseek", WIKI)):
        out.extend(p for p, _ in make_reader(fmt, path, config.ingest).passages())
    return out


def snapshot(config: PipelineConfig, ids: list[str]):
    with open_store(config.store) as store:
        records = store.retrieve(ids, with_vectors=True)
        return store.count(), {r.id: (r.vector, r.payload) for r in records}


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    """The reference build, shared by the read-only tests below."""
    config = make_config(tmp_path_factory.mktemp("ref"))
    reports = build_both(config, encoder)
    return config, reports


def test_build_indexes_every_passage_and_reports(built):
    config, (evqa, wiki) = built
    assert (evqa.passages_total, wiki.passages_total) == (50, 141)
    assert evqa.complete and wiki.complete and evqa.optimized
    assert wiki.collection_count == 191
    assert evqa.skipped == {"reference/link sections": 13, "empty sections": 3}
    assert evqa.malformed == 0 and evqa.missing_images == 0
    text = evqa.summary()
    assert "indexed 50 passages" in text and "[complete]" in text and "13 reference/link sections" in text
    with open_store(config.store) as store:
        state = store.load_state(STATE_NAME)
        assert sorted(s["source"]["format"] for s in state.values()) == ["evqa", "infoseek"]
        assert sorted(store.info()["payload_indexes"]) == ["url", "wikidata_id"]


def test_a_query_built_from_a_passage_text_finds_that_passage_first(built, encoder):
    config, _ = built
    passages = all_passages(config)
    sample = passages[::9]
    queries = encoder.encode_queries([p.text for p in sample], instruction="")
    with open_store(config.store) as store:
        for passage, hits in zip(sample, store.search_batch(queries, k=3)):
            assert hits[0].id == passage.id, passage.id
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_payloads_round_trip(built):
    config, _ = built
    passages = {p.id: p for p in all_passages(config)}
    with open_store(config.store) as store:
        for record in store.retrieve(list(passages)):
            assert record.payload == {**passages[record.id].payload, "passage_id": record.id}
        hit = store.search(store.retrieve(["Q42#3"], with_vectors=True)[0].vector, k=5, filter={"wikidata_id": "Q42"})
        assert hit[0].id == "Q42#3" and all(h.payload["wikidata_id"] == "Q42" for h in hit)
        url = "https://en.wikipedia.org/wiki/Taj_Mahal"
        assert store.count({"url": url}) == 5


def test_reindexing_overwrites_instead_of_duplicating(tmp_path, encoder, built):
    config = make_config(tmp_path)
    build_both(config, encoder)
    again = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False)
    assert again.passages_this_run == 0 and again.complete  # already complete: nothing to do
    restarted = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False, restart=True)
    assert restarted.passages_this_run == 141 and restarted.collection_count == 191
    ids = [p.id for p in all_passages(config)]
    count, points = snapshot(config, ids)
    ref_count, ref_points = snapshot(built[0], ids)
    assert count == ref_count == 191
    for pid in ids:
        np.testing.assert_array_equal(points[pid][0], ref_points[pid][0])


class FailingEncoder:
    """The real tiny encoder, made to crash on its ``fail_on``-th call (an interruption mid-run)."""

    def __init__(self, encoder, fail_on: int):
        self.encoder, self.fail_on, self.calls = encoder, fail_on, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("simulated crash")
        return self.encoder.encode(*args, **kwargs)


def test_interrupted_build_resumes_to_the_same_count_and_vectors(tmp_path, encoder, built):
    config = make_config(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(config, WIKI, "infoseek", encoder=FailingEncoder(encoder, fail_on=3), show_progress=False)
    with open_store(config.store) as store:
        assert store.count() == 64  # two batches of 32 were saved before the crash
        (state,) = store.load_state(STATE_NAME).values()
        assert state["passages"] == 64 and not state["complete"]
    resumed = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False)
    assert (resumed.resumed_from, resumed.passages_this_run, resumed.passages_total) == (64, 77, 141)
    build_index(config, EVQA, "evqa", encoder=encoder, show_progress=False)
    ids = [p.id for p in all_passages(config)]
    count, points = snapshot(config, ids)
    ref_count, ref_points = snapshot(built[0], ids)
    assert count == ref_count == 191
    for pid in ids:
        np.testing.assert_array_equal(points[pid][0], ref_points[pid][0])
        assert points[pid][1] == ref_points[pid][1]


def test_limit_then_continue(tmp_path, encoder):
    config = make_config(tmp_path)
    first = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False, limit=50)
    assert first.passages_total == 50 and first.stopped_at_limit and not first.complete
    assert "stopped at --limit" in first.summary()
    same = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False, limit=50)
    assert same.passages_this_run == 0
    rest = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False)
    assert (rest.passages_this_run, rest.collection_count, rest.complete) == (91, 141, True)


def test_another_encoder_or_dimension_is_refused(tmp_path, encoder):
    config = make_config(tmp_path)
    build_index(config, EVQA, "evqa", encoder=encoder, show_progress=False, limit=5)
    other_seed = build_tiny_encoder("clip", seed=1)
    with pytest.raises(CollectionMismatchError, match="fingerprint mismatch"):
        build_index(config, EVQA, "evqa", encoder=other_seed, show_progress=False)
    other_dim = build_tiny_encoder("clip", seed=0, embedding_dim=16)
    with pytest.raises(CollectionMismatchError, match=r"dimension \d+ != 16"):
        build_index(config, EVQA, "evqa", encoder=other_dim, show_progress=False)
    with open_store(config.store) as store:
        assert store.count() == 5


def test_malformed_rows_are_counted_and_strict_mode_stops(tmp_path, encoder):
    lines = WIKI.read_text().splitlines()
    lines.insert(3, "not json at all")
    lines.insert(7, json.dumps({"wikidata_id": "Q5", "wikipedia_title": "Human", "wikipedia_content": 12}))
    bad = tmp_path / "wiki_bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    config = make_config(tmp_path / "store")
    report = build_index(config, bad, "infoseek", encoder=encoder, show_progress=False)
    assert report.passages_total == 141 and report.malformed == 2
    assert report.malformed_examples[0].startswith(f"{bad}:4: invalid JSON")
    assert report.malformed_examples[1].startswith(f"{bad}:8:")
    assert f"malformed rows skipped: 2 (e.g. {bad}:4" in report.summary()
    strict = make_config(tmp_path / "strict", strict=True)
    with pytest.raises(RowError, match=rf"{bad}:4"):
        build_index(strict, bad, "infoseek", encoder=encoder, show_progress=False)


def test_missing_passage_images_fall_back_to_text_and_are_counted(tmp_path, encoder):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(FIXTURES / "images" / "chelsea.png", images / "Q146.jpg")  # the cat entity's image
    config = make_config(tmp_path / "store", image_root=str(images))
    report = build_index(config, WIKI, "infoseek", encoder=encoder, show_progress=False)
    passages = [p for p, _ in make_reader("infoseek", WIKI, config.ingest).passages()]
    cats = [p for p in passages if p.payload["wikidata_id"] == "Q146"]
    assert report.passages_total == 141
    assert report.missing_images == 141 - len(cats)
    assert "image file not found" in report.missing_image_examples[0]
    text_only = encoder.encode_documents([cats[0].text])[0]
    with_image = encoder.encode_documents([cats[0].text], images=[str(images / "Q146.jpg")])[0]
    paris = encoder.encode_documents([passages[0].text])[0]
    with open_store(config.store) as store:
        stored = store.retrieve([cats[0].id, passages[0].id], with_vectors=True)
    np.testing.assert_allclose(stored[0].vector, with_image, atol=1e-5)  # image+text document
    assert not np.allclose(stored[0].vector, text_only, atol=1e-5)
    np.testing.assert_allclose(stored[1].vector, paris, atol=1e-5)  # missing image: text-only


def test_server_backend_local_mode_end_to_end(tmp_path, encoder):
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    config = make_config(tmp_path)
    config = config.override({"store.backend": "server", "store.url": ":memory:"})
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(config, EVQA, "evqa", encoder=FailingEncoder(encoder, 2), show_progress=False,
                    store_kwargs={"client": client})
    report = build_index(config, EVQA, "evqa", encoder=encoder, show_progress=False, store_kwargs={"client": client})
    assert (report.resumed_from, report.passages_total, report.collection_count) == (32, 50, 50)
    with open_store(config.store, client=client) as store:
        assert store.metadata.encoder_fingerprint == encoder.fingerprint
        vector = encoder.encode_queries([all_passages(config)[7].text], instruction="")[0]
        assert store.search(vector, k=1)[0].id == all_passages(config)[7].id


def test_counts_of_malformed_rows_survive_an_interruption_exactly(tmp_path, encoder):
    """Rows read ahead of the last checkpoint are not counted twice, nor lost, across a resume."""
    lines = WIKI.read_text().splitlines()
    for at in (20, 9, 2):  # malformed rows before, around and after the crash point
        lines.insert(at, '{"wikidata_id": "Q0", ')
    bad = tmp_path / "wiki_bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    config = make_config(tmp_path / "store")
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(config, bad, "infoseek", encoder=FailingEncoder(encoder, fail_on=3), show_progress=False)
    with open_store(config.store) as store:
        (state,) = store.load_state(STATE_NAME).values()
    assert 0 < state["malformed"] < 3  # only the rows before the last saved batch
    report = build_index(config, bad, "infoseek", encoder=encoder, show_progress=False)
    assert (report.passages_total, report.malformed, report.collection_count) == (141, 3, 141)
    assert [e.split(": ")[0] for e in report.malformed_examples] == [f"{bad}:3", f"{bad}:11", f"{bad}:23"]


def test_zero_shot_dual_encoder_builds_and_is_reloaded_from_the_collection_metadata(tmp_path):
    from rag.components import open_collection

    config = make_config(tmp_path).override({"encoder.name_or_path": "tiny-random/clip", "encoder.revision": "seed2",
                                             "encoder.type": "dual_encoder"})
    report = build_index(config, EVQA, "evqa", show_progress=False)
    assert report.passages_total == 50
    # a config that names no encoder gets the one the collection records
    store, encoder = open_collection(config.override({"encoder.name_or_path": ""}))
    with store:
        assert store.metadata.encoder_loader == {"type": "dual_encoder", "name_or_path": "tiny-random/clip",
                                                 "revision": "seed2"}
        assert type(encoder).__name__ == "DualEncoder" and encoder.revision == "seed2"
        target = all_passages(config)[11]
        hits = store.search(encoder.encode_documents([target.text])[0], k=1)
        assert hits[0].id == target.id
