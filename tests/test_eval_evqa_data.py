"""E-VQA loaders: the question CSV, the streamed KB json, image files, and `datasets` views."""

import csv
import gzip
import json
import logging
import shutil
import zipfile

import pytest

from eval.evqa import (
    EVQA_COLUMNS,
    EVQAImageResolver,
    iter_kb,
    iter_questions,
    kb_dataset,
    landmarks_relative_path,
    load_questions,
    questions_dataset,
)
from ret2vqa.io import MalformedRows, RowError


@pytest.fixture
def csv_path(fixtures_dir):
    return fixtures_dir / "evqa" / "evqa_test_sample.csv"


@pytest.fixture
def kb_path(fixtures_dir):
    return fixtures_dir / "evqa" / "evqa_kb_sample.json"


def test_fixture_has_the_official_column_order(csv_path):
    with open(csv_path, encoding="utf-8", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == EVQA_COLUMNS


def test_load_questions_parses_every_question_type(csv_path):
    rows = load_questions(csv_path)
    assert [q.question_id for q in rows] == list(range(9))
    assert [q.question_type for q in rows] == [
        "templated",
        "automatic",
        "multi_answer",
        "2_hop",
        "templated",
        "automatic",
        "multi_answer",
        "2_hop",
        "templated",
    ]
    polar, menger, rosa, eiffel = rows[:4]
    assert polar.answers == ["25 years", "up to 25 years"]
    assert polar.image_ids == ["5012345", "5012346", "5012347"]
    assert polar.evidence_section_ids == [3]
    assert (polar.dataset_category_id, polar.wikipedia_url_used_in_train) == (41979, True)
    assert menger.wikipedia_url_used_in_train is False
    assert rosa.answers == ["white&&pink&&purple", "white&&pink"]
    assert eiffel.wikipedia_urls == [
        "https://en.wikipedia.org/wiki/Eiffel_Tower",
        "https://en.wikipedia.org/wiki/Gustave_Eiffel",
    ]
    assert eiffel.entity_url == "https://en.wikipedia.org/wiki/Eiffel_Tower"
    assert eiffel.evidence_section_ids == [0, 1] and not eiffel.is_single_hop
    assert (
        eiffel.wikipedia_url
        == "https://en.wikipedia.org/wiki/Eiffel_Tower|https://en.wikipedia.org/wiki/Gustave_Eiffel"
    )


def test_quoted_multiline_cell_keeps_line_numbers(csv_path):
    rows = load_questions(csv_path)
    trevi = rows[5]
    assert trevi.answers == ["Rome, Italy", "Rome"]
    assert trevi.evidence == "The Trevi Fountain is a fountain in the Trevi district\nin Rome, Italy."
    assert trevi.line == 7  # header is line 1, rows 0..5 start on lines 2..7
    assert rows[6].line == 9  # row 5 spans two physical lines


HEADER = ",".join(EVQA_COLUMNS)
GOOD = "T,http://w/T,q?,q?,templated,yes,,0,T,inaturalist,1,True,test,11"


def write_csv(tmp_path, *lines, name="bad.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def test_malformed_rows_strict_names_file_and_line(tmp_path):
    path = write_csv(tmp_path, GOOD, GOOD.replace("templated", "list"))
    with pytest.raises(RowError, match=r"bad\.csv:3: question_type 'list'"):
        load_questions(path)


@pytest.mark.parametrize(
    "row, message",
    [
        (GOOD.replace(",yes,", ",The,"), "empty after preprocessing"),
        (GOOD.replace(",yes,", ",yes|,"), "reference 2 of answer"),
        (GOOD.replace(",yes,", ",,"), "empty answer"),
        (GOOD.replace("templated,yes", "multi_answer,the&&a"), "no item left"),
        (GOOD.replace("templated", "2_hop"), "2_hop wikipedia_url must be two"),
        (GOOD.replace(",11", ","), "dataset_image_ids"),
        (GOOD.replace(",0,T,", ",x,T,"), "evidence_section_id"),
        (GOOD.replace(",True,", ",maybe,"), "wikipedia_url_used_in_train"),
        (GOOD.replace(",1,True", ",one,True"), "dataset_category_id"),
    ],
)
def test_each_validation_rule(tmp_path, row, message):
    with pytest.raises(RowError, match=message):
        load_questions(write_csv(tmp_path, row))


def test_lenient_mode_reports_and_keeps_ids_aligned(tmp_path, caplog):
    path = write_csv(
        tmp_path,
        GOOD,  # id 0, line 2
        GOOD + ",extra",  # id 1, line 3: wrong number of fields
        "",  # blank line: not a record
        GOOD.replace("templated", "list"),  # id 2, line 5: bad type
        GOOD.replace(",yes,", ",no,"),  # id 3, line 6
    )
    errors = MalformedRows(strict=False)
    with caplog.at_level(logging.WARNING):
        rows = load_questions(path, errors)
    assert [None if r is None else r.answer for r in rows] == ["yes", None, None, "no"]
    assert rows[3].question_id == 3 and rows[3].line == 6
    assert errors.count == 2
    assert errors.examples[0].endswith("bad.csv:3: expected 14 fields, got 15")
    assert "bad.csv:5: question_type 'list'" in errors.examples[1]
    assert [q.question_id for q in iter_questions(path, MalformedRows(strict=False))] == [0, 3]


def test_unscorable_answers_can_be_loaded_for_training_but_not_scored(tmp_path):
    from eval.evqa import score_predictions

    path = write_csv(tmp_path, GOOD.replace(",yes,", ",A,"))  # blood type 'A': empty after normalisation
    with pytest.raises(RowError, match="check_references=False"):
        load_questions(path)
    rows = load_questions(path, check_references=False)
    assert rows[0].answers == ["A"]
    with pytest.raises(
        ValueError, match=r"question_id 0 \(line 2\): reference answer 'A' is empty after preprocessing"
    ):
        score_predictions({0: "A"}, rows)


def test_other_question_types_can_be_loaded_on_request(tmp_path):
    path = write_csv(tmp_path, GOOD.replace("templated", "infoseek"))
    (row,) = load_questions(path, question_types=None)
    assert row.question_type == "infoseek"


def test_missing_column_is_reported_on_the_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(RowError, match=r"x\.csv:1: not an E-VQA question CSV: missing column\(s\) wikipedia_title"):
        load_questions(path)


def test_questions_dataset(csv_path, tmp_path):
    ds = questions_dataset(csv_path, cache_dir=tmp_path / "cache")
    assert len(ds) == 9
    assert ds[3]["wikipedia_urls"] == [
        "https://en.wikipedia.org/wiki/Eiffel_Tower",
        "https://en.wikipedia.org/wiki/Gustave_Eiffel",
    ]
    assert ds[0]["evidence_section_ids"] == [3] and ds[0]["question_id"] == 0
    assert set(EVQA_COLUMNS) <= set(ds.column_names)
    single_hop = ds.filter(lambda r: r["question_type"] != "2_hop")
    assert single_hop["question_id"] == [0, 1, 2, 4, 5, 6, 8]


def test_questions_dataset_replays_malformed_report_on_cache_hit(tmp_path):
    path = write_csv(tmp_path, GOOD, GOOD.replace("templated", "list"), GOOD)
    cache = tmp_path / "cache"
    for _ in range(2):  # the second call is served from the cache
        errors = MalformedRows(strict=False)
        ds = questions_dataset(path, errors=errors, cache_dir=cache)
        assert ds["question_id"] == [0, 2]
        assert errors.count == 1 and "bad.csv:3" in errors.examples[0]
    with pytest.raises(RowError, match=r"bad\.csv:3"):
        questions_dataset(path, cache_dir=cache)  # strict is a separate cache entry, and raises


# --- KB --------------------------------------------------------------------------------------


def test_iter_kb_streams_articles(kb_path):
    entries = dict(iter_kb(kb_path))
    assert len(entries) == 5
    eiffel = entries["https://en.wikipedia.org/wiki/Gustave_Eiffel"]
    assert eiffel.title == "Gustave Eiffel"
    assert list(eiffel.sections())[1] == (
        1,
        "Early life",
        "Eiffel was born in Dijon, in the Côte-d'Or department, in 1832.",
    )
    assert list(entries["https://en.wikipedia.org/wiki/Polar_bear"].images())[1] == (
        "https://upload.wikimedia.org/polar_bear_2.jpg",
        "A mother with cubs",
        3,
    )
    assert "https://en.wikipedia.org/wiki/J%C3%B8rn_Utzon" in entries  # keys are opaque, matched exactly


def test_kb_covers_the_fixture_questions(kb_path, csv_path):
    kb = dict(iter_kb(kb_path))
    eiffel_q = load_questions(csv_path)[3]
    url1, url2 = eiffel_q.wikipedia_urls
    section = kb[url2].section_texts[eiffel_q.evidence_section_ids[1]]
    assert "Dijon" in section


def test_kb_from_zip_and_gzip(kb_path, tmp_path):
    zipped = tmp_path / "encyclopedic_kb_wiki.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(kb_path, "encyclopedic_kb_wiki.json")
    gz = tmp_path / "kb.json.gz"
    gz.write_bytes(gzip.compress(kb_path.read_bytes()))
    expected = [url for url, _ in iter_kb(kb_path)]
    assert [url for url, _ in iter_kb(zipped)] == expected
    assert [url for url, _ in iter_kb(gz)] == expected


def test_kb_malformed_entries_are_reported_with_line(tmp_path, caplog):
    good = {
        "title": "A",
        "section_titles": ["A"],
        "section_texts": ["text"],
        "image_urls": [],
        "image_reference_descriptions": [],
        "image_section_indices": [],
        "url": "u1",
    }
    path = tmp_path / "kb.json"
    path.write_text(
        "{\n"
        f'"u1": {json.dumps(good)},\n'
        '"u2": {"title": "B", "section_titles": ["B", "x"], "section_texts": ["only one"]},\n'
        '"u3": ["not", "an", "object"],\n'
        f'"u4": {json.dumps({**good, "image_urls": ["i1", "i2"], "image_reference_descriptions": ["c1"]})}\n'
        "}\n",
        encoding="utf-8",
    )
    with pytest.raises(RowError, match=r"kb\.json:3: KB entry 'u2': 'section_titles' has 2 items"):
        list(iter_kb(path))
    errors = MalformedRows(strict=False)
    with caplog.at_level(logging.WARNING):
        urls = [url for url, _ in iter_kb(path, errors)]
    assert urls == ["u1", "u4"]
    assert errors.count == 2 and "kb.json:4: KB entry 'u3': expected an object" in errors.examples[1]
    assert "image_urls / image_reference_descriptions" in caplog.text  # ragged image lists: kept, counted


def test_kb_dataset(kb_path, tmp_path):
    ds = kb_dataset(kb_path, cache_dir=tmp_path / "cache")
    assert len(ds) == 5
    row = ds.filter(lambda r: r["title"] == "Polar bear")[0]
    assert row["image_section_indices"] == [0, 3] and row["section_titles"][3] == "Life span"


# --- images ----------------------------------------------------------------------------------


def test_landmarks_layout(fixtures_dir, tmp_path):
    target = tmp_path / "gldv2" / landmarks_relative_path("6d3c5f2b1a0e9f87")
    assert target.relative_to(tmp_path / "gldv2").parts == ("6", "d", "3", "6d3c5f2b1a0e9f87.jpg")
    target.parent.mkdir(parents=True)
    shutil.copy(fixtures_dir / "images" / "rocket.jpg", target)
    resolver = EVQAImageResolver(landmarks_root=tmp_path / "gldv2")
    menger = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")[1]
    assert resolver.question_image(menger) == target
    with pytest.raises(FileNotFoundError, match="a1b2c3d4e5f60718"):
        resolver.resolve("landmarks", "a1b2c3d4e5f60718")


@pytest.mark.parametrize("mapping_kind", ["id2name", "coco"])
def test_inaturalist_layout(fixtures_dir, tmp_path, mapping_kind):
    root = tmp_path / "inat"
    (root / "val" / "04567_Ursus").mkdir(parents=True)
    shutil.copy(fixtures_dir / "images" / "chelsea.png", root / "val" / "04567_Ursus" / "abc.png")
    mapping = {"5012345": "val/04567_Ursus/abc.png"}
    if mapping_kind == "coco":
        data = {"images": [{"id": 5012345, "file_name": "val/04567_Ursus/abc.png", "width": 1, "height": 1}]}
    else:
        data = mapping
    (tmp_path / "map.json").write_text(json.dumps(data), encoding="utf-8")
    resolver = EVQAImageResolver(inaturalist_root=root, inaturalist_id2name=tmp_path / "map.json")
    polar = load_questions(fixtures_dir / "evqa" / "evqa_test_sample.csv")[0]
    assert resolver.question_image(polar) == root / "val" / "04567_Ursus" / "abc.png"
    with pytest.raises(FileNotFoundError, match="5012346"):
        resolver.question_image(polar, which=1)
    with pytest.raises(ValueError, match="unknown E-VQA image dataset"):
        resolver.resolve("infoseek", "x")
