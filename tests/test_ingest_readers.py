"""KB readers, chunking and index configs, on the hand-written KB fixtures (no encoder needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.config import PipelineConfig
from rag.ingest import IngestConfig, Position, chunk_words, make_reader, split_sentences
from ret2vqa.config import ConfigError
from ret2vqa.io import MalformedRows, RowError

KB = Path(__file__).resolve().parent / "fixtures" / "kb"
EVQA = KB / "evqa_kb.json"
WIKI = KB / "wiki_kb.jsonl"
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "index"


def read_all(fmt, path, start=None, **options):
    reader = make_reader(fmt, path, IngestConfig(**options), MalformedRows(strict=False))
    return reader, list(reader.passages(start))


def test_chunk_words_packs_sentences_within_the_budget_and_keeps_every_word():
    text = "One two three. Four five six seven! " + " ".join(f"w{i}" for i in range(25)) + ". Last one?"
    chunks = list(chunk_words(text, 8))
    assert all(len(c.split()) <= 8 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert chunks[0] == "One two three. Four five six seven!"  # whole sentences packed together
    assert list(chunk_words(text, 8)) == chunks
    assert split_sentences("A b. C d!\n\nE f") == ["A b.", "C d!", "E f"]


def test_evqa_reader_sections_as_titled_passages_skipping_references_links_and_empty():
    reader, items = read_all("evqa", EVQA)
    kb = json.loads(EVQA.read_text())
    expected = []
    for url, entry in kb.items():
        for i, (title, text) in enumerate(zip(entry["section_titles"], entry["section_texts"])):
            low = title.lower()
            if "reference" in low or "external link" in low or len(text.strip()) < 5:
                continue
            expected.append(f"{url}#{i}")
    assert [p.id for p, _ in items] == expected
    assert len(items) == 50
    assert reader.skipped == {"reference/link sections": 13, "empty sections": 3}
    by_id = {p.id: p for p, _ in items}
    lead = by_id["https://en.wikipedia.org/wiki/Eiffel_Tower#0"]
    assert lead.text.startswith("Eiffel Tower. The Eiffel Tower is a wrought-iron lattice tower")
    history = by_id["https://en.wikipedia.org/wiki/Eiffel_Tower#1"]
    assert history.text.startswith("Eiffel Tower - History. The tower was built")
    assert history.payload["url"] == "https://en.wikipedia.org/wiki/Eiffel_Tower"
    assert history.payload["section_index"] == 1 and history.payload["title"] == "Eiffel Tower"
    assert history.payload["image_urls"] == ["https://upload.wikimedia.org/wikipedia/commons/Eiffel_construction_1888.jpg"]
    assert history.payload["image_url"].endswith("Tour_Eiffel.jpg") and history.payload["text"] == history.text
    assert history.image is None  # no image_root: text-only
    assert reader.count_records() == len(kb)


def test_evqa_reader_resumes_from_a_position_inside_an_article():
    _, items = read_all("evqa", EVQA)
    start = items[18][1]
    assert start.chunk > 0
    _, tail = read_all("evqa", EVQA, start=start)
    assert [p.id for p, _ in tail] == [p.id for p, _ in items[18:]]


def test_evqa_optional_section_chunking_and_article_image(tmp_path):
    _, items = read_all("evqa", EVQA, chunk_sections=True, chunk_tokens=12, image_root=str(tmp_path))
    ids = [p.id for p, _ in items]
    assert "https://en.wikipedia.org/wiki/Eiffel_Tower#0-1" in ids and len(ids) > 50
    first = items[0][0]
    assert first.image == str(tmp_path / "Tour_Eiffel.jpg")  # the article's lead image, by file name
    assert all(len(p.text.split()) <= 12 + 6 for p, _ in items)  # budget + "Title - Section." prefix


def test_infoseek_reader_chunks_content_keeps_wikidata_id_and_resumes_by_line():
    reader, items = read_all("infoseek", WIKI, chunk_tokens=16)
    assert len(items) == 141
    rows = [json.loads(line) for line in WIKI.read_text().splitlines()]
    assert [p.payload["wikidata_id"] for p, _ in items if p.payload["chunk_index"] == 0] == [r["wikidata_id"] for r in rows]
    paris = [p for p, _ in items if p.payload["wikidata_id"] == "Q90"]
    assert [p.id for p in paris] == [f"Q90#{i}" for i in range(len(paris))]
    assert all(p.text.startswith("Paris. ") for p in paris)
    body = " ".join(p.text[len("Paris. "):] for p in paris)
    assert body.split() == rows[0]["wikipedia_content"].split()
    assert items[40][1].record == next(i for i, r in enumerate(rows, 1) if r["wikidata_id"] == items[40][0].payload["wikidata_id"])
    _, tail = read_all("infoseek", WIKI, start=items[40][1], chunk_tokens=16)
    assert [p.id for p, _ in tail] == [p.id for p, _ in items[40:]]
    assert reader.count_records() == len(rows)


def test_malformed_rows_are_reported_with_file_and_line_or_fatal_when_strict(tmp_path):
    lines = WIKI.read_text().splitlines()
    bad = tmp_path / "wiki.jsonl"
    lines.insert(2, '{"wikidata_id": "Q1", "wikipedia_title": "Broken"')  # line 3: invalid JSON
    lines.insert(5, json.dumps({"wikipedia_title": "No id", "wikipedia_content": "Text."}))  # line 6
    bad.write_text("\n".join(lines) + "\n")
    errors = MalformedRows(strict=False)
    reader = make_reader("infoseek", bad, IngestConfig(chunk_tokens=16), errors)
    assert len(list(reader.passages())) == 141
    assert errors.count == 2
    assert errors.examples[0].startswith(f"{bad}:3: invalid JSON")
    assert errors.examples[1].startswith(f"{bad}:6:") and "wikidata_id" in errors.examples[1]
    strict = make_reader("infoseek", bad, IngestConfig(chunk_tokens=16, strict=True))
    with pytest.raises(RowError, match=rf"{bad}:3"):
        list(strict.passages())


def test_infoseek_entity_images_from_a_template(tmp_path):
    _, items = read_all("infoseek", WIKI, chunk_tokens=16, image_root=str(tmp_path),
                        image_template="{wikidata_prefix}/{wikidata_id}.jpg")
    cat = next(p for p, _ in items if p.id == "Q146#0")
    assert cat.image == str(tmp_path / "Q146" / "Q146.jpg")
    assert cat.payload["image_url"].endswith("Cat_poster_1.jpg")
    with pytest.raises(ValueError, match="image_template"):
        read_all("infoseek", WIKI, image_root=str(tmp_path), image_template="{nope}.jpg")


def test_m2kr_and_generic_jsonl_readers(tmp_path):
    shutil.copy(KB.parent / "images" / "rocket.jpg", tmp_path / "rocket.jpg")
    m2kr = tmp_path / "passages.jsonl"
    m2kr.write_text(
        json.dumps({"passage_id": "EVQA_1", "passage_text": "A rocket launch.", "passage_image_path": "rocket.jpg",
                    "title": "Falcon 9"}) + "\n"
        + json.dumps({"passage_id": 7, "passage_content": "Text only passage."}) + "\n"
        + json.dumps({"passage_text": "no id"}) + "\n"
    )
    errors = MalformedRows(strict=False)
    reader = make_reader("m2kr", m2kr, IngestConfig(), errors)
    items = [p for p, _ in reader.passages()]
    assert [p.id for p in items] == ["EVQA_1", "7"]
    assert items[0].image == str(tmp_path / "rocket.jpg") and items[0].payload["title"] == "Falcon 9"
    assert items[0].payload["image_path"] == "rocket.jpg" and items[1].image is None
    assert errors.count == 1 and errors.examples[0].startswith(f"{m2kr}:3:")

    generic = tmp_path / "kb.jsonl"
    generic.write_text(
        json.dumps({"id": "a", "text": "Alpha.", "metadata": {"lang": "en", "year": 2020}}) + "\n"
        + json.dumps({"id": "b", "image": "rocket.jpg"}) + "\n"
        + json.dumps({"id": "c", "image": "gone.jpg"}) + "\n"
        + json.dumps({"id": "d", "text": "x", "metadata": {"text": "clash"}}) + "\n"
    )
    errors = MalformedRows(strict=False)
    items = [p for p, _ in make_reader("jsonl", generic, IngestConfig(), errors).passages()]
    assert [p.id for p in items] == ["a", "b"]
    assert items[0].payload == {"lang": "en", "year": 2020, "source": "jsonl", "text": "Alpha."}
    assert items[1].text == "" and items[1].image == str(tmp_path / "rocket.jpg")
    assert errors.count == 2
    assert "no text and its image is missing" in errors.examples[0] and "reserved" in errors.examples[1]


def test_unknown_format_and_missing_file():
    from ret2vqa.errors import MissingFileError

    with pytest.raises(ConfigError, match="unknown KB format"):
        make_reader("csv", WIKI, IngestConfig())
    with pytest.raises(MissingFileError, match="nope.jsonl"):
        make_reader("jsonl", KB / "nope.jsonl", IngestConfig())


def test_index_config_yaml_sections_and_field_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "encoder: {name_or_path: tiny-random/clip, batch_size: 8}\n"
        "store: {path: /x, collection: c, hnsw: {m: 8, ef_construct: 32}}\n"
        "ingest: {batch_size: 4}\n"
        "generator: {model: tiny-random/qwen2_vl}\n"
    )
    config = PipelineConfig.from_yaml(path)
    assert config.encoder.given and config.store.hnsw.m == 8 and config.ingest.batch_size == 4
    # every section is checked when read, by every command: unknown keys, types and values
    for text, message in [
        ("store: {hnsw: {mm: 8}}\n", r"c\.yaml: store\.hnsw\.mm: unknown field"),
        ("ingest: {batch_size: many}\n", r"c\.yaml: ingest\.batch_size: expected an integer"),
        ("store: {backend: server}\n", r"c\.yaml: store\.url: required"),
        ("store: {hnsw: {m: 2}}\n", r"c\.yaml: store\.hnsw\.m: must be >= 4"),
        ("generator: {anything: 1}\n", r"c\.yaml: generator\.anything: unknown field"),
        ("encoder: {name_or_path: tiny}\n", r"c\.yaml: encoder\.name_or_path: 'tiny' is spelled 'tiny-random/clip'"),
        ("stor: {path: x}\n", r"c\.yaml: stor: unknown section"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            PipelineConfig.from_yaml(path)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_index_configs_are_valid(name):
    config = PipelineConfig.from_yaml(CONFIGS / name)
    assert config.encoder.name_or_path
    assert Position(1, 0) < Position(1, 1) < Position(2, 0)
