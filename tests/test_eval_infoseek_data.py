"""InfoSeek loaders on real rows: annotations, qtype / withkb side files, Wiki KBs, OVEN images."""

import gzip
import json
import shutil

import pytest

from eval.infoseek import (
    OvenImageResolver,
    iter_questions,
    iter_wiki_kb,
    iter_withkb,
    load_qtypes,
    load_references,
    oven_shard,
    questions_dataset,
    wiki_kb_dataset,
)
from ret2vqa.io import MalformedRows, RowError


@pytest.fixture
def infoseek_dir(fixtures_dir):
    return fixtures_dir / "infoseek"


def test_real_train_rows(infoseek_dir):
    questions = list(iter_questions(infoseek_dir / "infoseek_train_sample300.jsonl"))
    assert len(questions) == 300
    first = questions[0]
    assert (first.data_id, first.image_id, first.answer, first.data_split) == (
        "infoseek_train_00000019",
        "oven_03183340",
        ["India"],
        "train",
    )
    numeric = next(q for q in questions if q.data_id == "infoseek_train_00000095")
    assert numeric.answer_range == [12.6, 15.4] and numeric.answer_wikidata == 14.0
    row = numeric.to_dict()
    assert row["answer_eval"] == ["12.6", "15.4"] and row["answer_range"] == [12.6, 15.4]
    assert first.answer_range is None and first.to_dict()["answer_range"] == []


def test_side_files_join(infoseek_dir):
    qtypes = load_qtypes(infoseek_dir / "infoseek_train_sample300_qtype.jsonl")
    links = list(iter_withkb(infoseek_dir / "infoseek_train_sample300_withkb.jsonl"))
    assert (links[1].data_id, links[1].entity_id, links[1].entity_text) == (
        "infoseek_train_00000027",
        "Q202878",
        "Mae West",
    )
    entities = {link.data_id: (link.entity_id, link.entity_text) for link in links}
    questions = list(iter_questions(infoseek_dir / "infoseek_train_sample300.jsonl", qtypes=qtypes, entities=entities))
    assert questions[1].question_type == "String" and questions[1].entity_id == "Q202878"
    assert sum(q.question_type == "Numerical" for q in questions) == 100


def test_questions_dataset_with_side_files(infoseek_dir, tmp_path):
    ds = questions_dataset(
        infoseek_dir / "infoseek_train_sample300.jsonl",
        qtype_path=infoseek_dir / "infoseek_train_sample300_qtype.jsonl",
        withkb_path=infoseek_dir / "infoseek_train_sample300_withkb.jsonl",
        cache_dir=tmp_path / "cache",
    )
    assert len(ds) == 300
    numerical = ds.filter(lambda r: r["question_type"] == "Numerical")
    assert len(numerical) == 100 and all(len(r) == 2 for r in numerical["answer_range"])
    assert ds[1]["entity_text"] == "Mae West"
    shards = [ds.shard(num_shards=3, index=i) for i in range(3)]
    assert sum(len(s) for s in shards) == 300


def test_evaluator_internal_form_loads_too(infoseek_dir):
    questions = list(iter_questions(infoseek_dir / "infoseek_val_sample300.qid2example.jsonl"))
    assert len(questions) == 300 and questions[2].question_type == "Numerical"
    assert questions[2].answer_eval == ["6.5", "7.0"]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {
    "data_id": "infoseek_val_1",
    "image_id": "oven_00000001",
    "question": "q?",
    "answer": ["a"],
    "answer_eval": ["a"],
    "data_split": "val_unseen_entity",
}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({**GOOD, "answer_eval": []}, "non-empty list"),
        ({**GOOD, "answer_eval": [{"wikidata": 1.0}]}, "range"),
        ({**GOOD, "answer_eval": [{"wikidata": 1.0, "range": ["a", "b"]}]}, "range"),
        ({**GOOD, "answer": "a"}, "list of strings"),
        ({k: v for k, v in GOOD.items() if k != "data_split"}, "data_split"),
        ("{not json", "invalid JSON"),
    ],
)
def test_malformed_annotation_rows(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "ann.jsonl", [GOOD, bad, GOOD])
    with pytest.raises(RowError, match=rf"ann\.jsonl:2: .*{message}"):
        list(iter_questions(path))
    errors = MalformedRows(strict=False)
    assert len(list(iter_questions(path, errors))) == 2 and errors.count == 1


def test_test_split_rows_need_no_answers(tmp_path):
    row = {k: v for k, v in GOOD.items() if k not in ("answer", "answer_eval")}
    path = write_jsonl(tmp_path / "test.jsonl", [{**row, "data_split": "test_unseen_entity"}])
    (question,) = iter_questions(path)
    assert question.answer is None and question.to_dict()["answer_eval"] == []
    with pytest.raises(RowError, match="answer"):
        list(iter_questions(path, require_answers=True))


def test_reference_without_question_type_is_an_error(tmp_path, infoseek_dir):
    ref = write_jsonl(tmp_path / "ref.jsonl", [GOOD])
    qtype = write_jsonl(tmp_path / "qtype.jsonl", [{"data_id": "other", "question_type": "String"}])
    with pytest.raises(RowError, match=r"ref\.jsonl:1: data_id 'infoseek_val_1' has no question type"):
        load_references(ref, qtype)


def test_conflicting_qtypes_are_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"data_id": "x", "question_type": "String"}, {"data_id": "x", "question_type": "Time"}]
    )
    with pytest.raises(RowError, match=r"q\.jsonl:2: data_id 'x' has question_type 'Time' here but 'String' at line 1"):
        load_qtypes(path)


# --- Wiki KBs --------------------------------------------------------------------------------

WIKI6M = [
    {
        "wikidata_id": "Q3783438",
        "wikipedia_title": "Harold Keeling",
        "wikipedia_content": "Harold A. Keeling...",
        "wikipedia_image_url": None,
        "wikipedia_summary": "Harold A. Keeling...",
    },
    {"wikidata_id": "Q178185", "wikipedia_title": "Heat engine", "wikipedia_content": "A heat engine is a system..."},
]


@pytest.mark.parametrize("compress", [False, True])
def test_wiki6m_jsonl(tmp_path, compress):
    path = write_jsonl(tmp_path / "Wiki6M_ver_1_0.jsonl", WIKI6M)
    if compress:
        gz = tmp_path / "Wiki6M_ver_1_0.jsonl.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    entries = list(iter_wiki_kb(path))
    assert [key for key, _ in entries] == ["Q3783438", "Q178185"]
    assert entries[0][1].wikipedia_image_url is None and entries[1][1].wikipedia_summary is None
    assert entries[1][1].wikipedia_content == "A heat engine is a system..."


def test_wiki6m_title_only_and_bad_records(tmp_path):
    path = write_jsonl(
        tmp_path / "Wiki6M_ver_1_0_title_only.jsonl",
        [{"wikidata_id": "Q1", "wikipedia_title": "Universe"}, {"wikipedia_title": "no id", "wikipedia_content": ""}],
    )
    with pytest.raises(RowError, match=r"title_only\.jsonl:1: field 'wikipedia_content'"):
        list(iter_wiki_kb(path))
    errors = MalformedRows(strict=False)
    entries = list(iter_wiki_kb(path, errors, require_content=False))
    assert [(k, e.wikipedia_content) for k, e in entries] == [("Q1", "")]
    assert errors.count == 1 and "title_only.jsonl:2: field 'wikidata_id'" in errors.examples[0]


@pytest.mark.parametrize("keys", ["qid", "url"])
def test_wiki100k_json_object_is_streamed(tmp_path, keys):
    docs = {
        ("Q178185" if keys == "qid" else "https://en.wikipedia.org/wiki/Heat_engine"): {
            "wikipedia_title": "Heat engine",
            "wikipedia_content": "A heat engine is a system...",
        },
        ("Q1" if keys == "qid" else "https://en.wikipedia.org/wiki/Universe"): {
            "title": "Universe",
            "wikipedia_content": "The universe is...",
        },
    }
    path = tmp_path / "Wiki100k_ver_1_0-all.json"
    path.write_text(json.dumps(docs, indent=1), encoding="utf-8")
    entries = list(iter_wiki_kb(path))
    assert [k for k, _ in entries] == list(docs)
    assert entries[1][1].wikipedia_title == "Universe"
    assert entries[0][1].wikidata_id == ("Q178185" if keys == "qid" else None)


def test_wiki_kb_dataset(tmp_path):
    ds = wiki_kb_dataset(write_jsonl(tmp_path / "kb.jsonl", WIKI6M), cache_dir=tmp_path / "cache")
    assert ds["key"] == ["Q3783438", "Q178185"] and ds[0]["wikipedia_image_url"] is None


def test_unknown_kb_extension(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown KB file type"):
        list(iter_wiki_kb(path))


# --- OVEN images -----------------------------------------------------------------------------


def test_oven_shard():
    assert oven_shard("oven_01963180") == "01"
    with pytest.raises(ValueError, match="not an OVEN image id"):
        oven_shard("oven_123")


def test_sharded_flat_and_id2image_layouts(fixtures_dir, tmp_path):
    image = fixtures_dir / "images" / "rocket.jpg"
    (tmp_path / "sharded" / "03").mkdir(parents=True)
    shutil.copy(image, tmp_path / "sharded" / "03" / "oven_03183340.JPEG")
    (tmp_path / "flat").mkdir()
    shutil.copy(image, tmp_path / "flat" / "oven_03088768.jpg")

    sharded = OvenImageResolver(tmp_path / "sharded", layout="sharded")
    assert sharded.resolve("oven_03183340") == tmp_path / "sharded" / "03" / "oven_03183340.JPEG"
    flat = OvenImageResolver(tmp_path / "flat", layout="flat")
    assert flat.resolve("oven_03088768") == tmp_path / "flat" / "oven_03088768.jpg"
    auto = OvenImageResolver(tmp_path / "flat")
    assert auto.resolve("oven_03088768") == tmp_path / "flat" / "oven_03088768.jpg"
    with pytest.raises(FileNotFoundError, match="oven_03183340 not found"):
        flat.resolve("oven_03183340")

    write_jsonl(
        tmp_path / "id2image.jsonl", [{"image_id": "oven_03183340", "image_path": "sharded/03/oven_03183340.JPEG"}]
    )
    mapped = OvenImageResolver(tmp_path, id2image=tmp_path / "id2image.jsonl")
    assert mapped.resolve("oven_03183340") == tmp_path / "sharded" / "03" / "oven_03183340.JPEG"
    with pytest.raises(FileNotFoundError, match="not in"):
        mapped.resolve("oven_03088768")
