"""The RAG pipeline end to end: tiny encoder + embedded Qdrant Edge store + tiny generator."""

import pytest
from PIL import Image

from rag.demo import DEMO_DIR, KB_FILE
from rag.pipeline import Pipeline, Query

from conftest import tiny_pipeline_config as tiny_config  # tests/ is on sys.path (rootdir conftest)


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline):
    return tiny_pipeline


def demo_rows():
    import json

    return [json.loads(line) for line in KB_FILE.read_text().splitlines()]


def test_answer_returns_string_sources_and_timings(pipeline):
    row = next(r for r in demo_rows() if r["id"] == "eileen-collins")
    image = DEMO_DIR / row["image"]
    # the query is exactly the document (same text, same image, no instruction): it must rank first
    result = pipeline.answer(row["text"], str(image))
    assert isinstance(result.answer, str)
    assert [p.id for p in result.passages][0] == "eileen-collins"
    assert result.passages[0].score == pytest.approx(1.0, abs=1e-4)
    scores = [p.score for p in result.passages]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    top = result.passages[0]
    assert top.title == "Eileen Collins" and top.url.endswith("/Eileen_Collins")
    assert top.image == "images/astronaut.jpg" and top.text.startswith("Eileen Collins.")
    assert set(result.timings) == {"encode_ms", "search_ms", "generate_ms", "total_ms"}
    assert all(v >= 0 for v in result.timings.values())
    assert result.timings["total_ms"] >= result.timings["generate_ms"]


def test_prompt_holds_passages_in_rank_order(pipeline):
    result = pipeline.answer("Where did this drink originate?", Image.open(DEMO_DIR / "images" / "coffee.jpg"))
    titles = [p.title for p in result.passages]
    positions = [result.prompt.find(f"{t}:") for t in titles[: result.passages_used]]
    assert result.passages_used >= 1
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert "Where did this drink originate?" in result.prompt


def test_zero_shot_skips_retrieval(pipeline):
    result = pipeline.answer("What animal is this?", str(DEMO_DIR / "images" / "horse.jpg"), k=0)
    assert result.passages == [] and result.passages_used == 0
    assert "Context:" not in result.prompt and isinstance(result.answer, str)


def test_batch_matches_single(pipeline):
    queries = [Query("What is this?", str(DEMO_DIR / "images" / "rocket.jpg")),
               {"question": "Who is this?", "image": str(DEMO_DIR / "images" / "astronaut.jpg")},
               "Which tower was built for the 1889 World's Fair?"]
    batch = pipeline.answer_batch(queries)
    singles = [pipeline.answer(Query.coerce(q).question, Query.coerce(q).image) for q in queries]
    assert [a.answer for a in batch] == [a.answer for a in singles]
    assert [[p.id for p in a.passages] for a in batch] == [[p.id for p in a.passages] for a in singles]


def test_filter_restricts_results(pipeline):
    hits = pipeline.retrieve("a hot drink", k=10, filter={"topic": "coffee"})
    assert hits and {h.payload["topic"] for h in hits} == {"coffee"}


def test_mismatched_encoder_is_refused(tmp_path, pipeline):
    from rag.store import CollectionMismatchError

    cfg = tiny_config(pipeline.config.store.path).override({"encoder.revision": "seed1"})  # other weights, same shape
    with pytest.raises(CollectionMismatchError, match="fingerprint"):
        Pipeline.from_config(cfg, load_generator=False)


def test_query_validation():
    with pytest.raises(ValueError, match="non-empty 'question'"):
        Query.coerce({"image": "x.jpg"})
    assert Query.coerce(("Why?", "img.jpg")) == Query("Why?", "img.jpg")  # (question, image), as everywhere
