"""``ret2vqa eval m2kr`` / ``eval mbeir``: metrics against hand-computed cases, the format readers, and
end-to-end runs with tiny encoders on the real-format fixtures (tests/fixtures/m2kr, tests/fixtures/mbeir)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval.retrieval import pseudo_hit_ranks
from eval.retrieval_benchmark import RetrievalQuery, mbeir_average, pooled_metrics, task_metrics
from rag.cli import main
from ret2vqa.errors import ConfigError, RowError
from ret2vqa.io import MalformedRows

FIXTURES = Path(__file__).resolve().parent / "fixtures"
M2KR_KS = (1, 2, 3, 5, 10, 50, 100)


def q(positives, answers=(), qid="q"):
    return RetrievalQuery(id=qid, question="?", image=None, positives=list(positives), answers=list(answers))


# ----------------------------------------------------------------------------------------- metrics


def test_recall_hand_computed_ties_duplicates_empty_several_positives():
    queries = [
        q(["p"], qid="tie"),            # tied scores: the store's order decides, p is second
        q(["p"], qid="dup"),            # a repeated id keeps its slots (no de-duplication, as ReT scores)
        q(["p"], qid="empty"),          # nothing retrieved: a miss at every K, still counted
        q(["a", "b", "b"], qid="two"),  # several positives (one repeated): any of them hits, once
        q(["p"], qid="first"),
    ]
    rankings = [["x", "p"], ["x", "x", "p"], [], ["z", "b", "a"], ["p", "y", "z"]]
    m = task_metrics(queries, rankings, ks=(1, 2, 3, 5))
    assert m == {"n": 5, "recall@1": 1 / 5, "recall@2": 3 / 5, "recall@3": 4 / 5, "recall@5": 4 / 5}


def test_pseudo_recall_case_folding_and_queries_without_answers():
    queries = [q(["p"], [" Big BEN "]), q(["p"], ["Ottawa", ""]), q(["p"], []), q(["p"], ["  "])]
    texts = [["The great bell is called big ben."], ["Paris.", "The capital is OTTAWA."], ["anything"], ["x"]]
    ranks = pseudo_hit_ranks(texts, [x.answers for x in queries], on_empty="miss")
    assert ranks == [1, 2, None, None]
    m = task_metrics(queries, [["p"], ["z"], ["p"], ["p"]], ks=(1, 2), pseudo_ranks=ranks)
    # pseudo-recall is over the 2 queries with a non-empty answer; recall over all 4
    assert m == {"n": 4, "recall@1": 0.75, "recall@2": 0.75, "n_pseudo": 2, "pseudo_recall@1": 0.5,
                 "pseudo_recall@2": 1.0}


def test_perfect_and_reversed_rankings():
    corpus = [f"p{i}" for i in range(100)]
    queries = [q([pid], qid=pid) for pid in corpus[:10]]
    perfect = [[pid] + [c for c in corpus if c != pid] for pid in corpus[:10]]
    assert task_metrics(queries, perfect, M2KR_KS) == {"n": 10, **{f"recall@{k}": 1.0 for k in M2KR_KS}}
    reversed_ = [list(reversed(r)) for r in perfect]  # the positive comes last, at rank 100
    m = task_metrics(queries, reversed_, M2KR_KS)
    assert [m[f"recall@{k}"] for k in M2KR_KS] == [0.0] * 6 + [1.0]


def test_pooled_average_is_over_queries_and_mbeir_average_over_rows():
    per_task = {"A": {"n": 3, "recall@1": 1 / 3, "n_pseudo": 1, "pseudo_recall@1": 1.0},
                "B": {"n": 1, "recall@1": 1.0, "n_pseudo": 0, "pseudo_recall@1": None}}
    assert pooled_metrics(per_task, [1]) == {"recall@1": 0.5, "n": 4, "pseudo_recall@1": 1.0, "n_pseudo": 1}
    assert pooled_metrics({"A": {"n": 0, "recall@1": None}}, [1])["recall@1"] is None
    rows = {"mscoco_task0": {"headline": "recall@5", "recall@5": 0.5, "recall@10": 1.0},
            "fashioniq_task7": {"headline": "recall@10", "recall@10": 0.25}}
    avg = mbeir_average(rows)
    assert avg["average"] == pytest.approx(0.375) and avg["average_rows"] == 2
    assert "over 2 of UniIR's 16" in avg["average_note"] and "visualnews_task0" in avg["average_note"]


# ----------------------------------------------------------------------------------------- readers


def _to_parquet(src: Path, dst: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in src.read_text().splitlines()]), dst)


def _m2kr_dataset(tmp: Path) -> Path:
    """The original-layout fixture as the HF dataset ships it: parquet files with the split in their names."""
    data = tmp / "M2KR"
    for folder in (FIXTURES / "m2kr" / "original").iterdir():
        for f in folder.glob("*.jsonl"):
            _to_parquet(f, data / folder.name / f"{f.stem}-00000-of-00001.parquet")
    return data


def test_m2kr_parquet_rows_read_like_jsonl(tmp_path):
    from eval.m2kr import find_m2kr_tasks, iter_m2kr_passages, iter_m2kr_queries

    data = _m2kr_dataset(tmp_path)
    tasks = find_m2kr_tasks(data, "test")
    assert [t.name for t in tasks] == ["EVQA", "Infoseek"]
    assert tasks[0].queries[0].name == "test-00000-of-00001.parquet"
    assert tasks[0].passages[0].name == "test_passages-00000-of-00001.parquet"
    src = FIXTURES / "m2kr" / "original" / "EVQA_data" / "test.jsonl"
    from_parquet, from_jsonl = list(iter_m2kr_queries(tasks[0].queries[0])), list(iter_m2kr_queries(src))
    assert from_parquet == from_jsonl and len(from_parquet) == 12
    assert from_parquet[3].positives == ["WikiWeb_Marksburg_3"] and from_parquet[3].line == 4
    assert from_parquet[0].text.startswith("Identify the document") and from_parquet[0].image_path.startswith("inat/")
    passages = list(iter_m2kr_passages(tasks[1].passages[0], start_line=12))
    assert [p.line for p in passages] == [12, 13] and passages[0].extra == {"title": "Berlin"}
    assert [t.name for t in find_m2kr_tasks(data, "test", ["infoseek"])] == ["Infoseek"]
    with pytest.raises(ConfigError, match="no task 'OKVQA'.*found: EVQA, Infoseek"):
        find_m2kr_tasks(data, "test", ["OKVQA"])
    with pytest.raises(FileNotFoundError, match="valid"):
        find_m2kr_tasks(data, "valid")


def test_m2kr_numerical_answers_read_as_their_value(tmp_path):
    from eval.m2kr import parse_m2kr_query

    row = {"data_id": "x", "question": "How tall?", "passage_id": [1, "2"],
           "answer": [{"wikidata": 14.0, "range": [12.6, 15.4]}, "fourteen", None]}
    assert parse_m2kr_query(row, "q.jsonl", 1).answers == ["14.0", "fourteen"]


def test_mbeir_conventions(tmp_path):
    from eval.mbeir import (
        find_mbeir_tasks,
        format_string,
        iter_mbeir_queries,
        load_instructions,
        load_qrels,
        query_prompt,
        split_instruction,
    )

    assert format_string(' "a cat on a mat"\r ') == "A cat on a mat."
    assert format_string("Why?") == "Why?" and format_string("") == "" and format_string(None) == ""
    prompt = "Find me an everyday image that matches the given caption"
    assert split_instruction(prompt, "two dogs") == (prompt + ".", "two dogs.")
    assert split_instruction(prompt, None) == (prompt + ".", "")
    instruction, question = split_instruction(prompt, "what is it?")
    assert f"{instruction} {question}" == format_string(f"{format_string(prompt)} what is it?")

    root = FIXTURES / "mbeir" / "M-BEIR"
    tasks = find_mbeir_tasks(root, "test")
    assert [t.name for t in tasks] == ["mscoco_task0", "webqa_task1", "fashioniq_task7"]  # UniIR's table order
    assert tasks[0].local_pool.name == "mbeir_mscoco_task0_test_cand_pool.jsonl"  # MSCOCO's per-split pool
    assert tasks[2].local_pool.name == "mbeir_fashioniq_task7_cand_pool.jsonl"
    assert [t.name for t in find_mbeir_tasks(root, "test", ["fashioniq", "mscoco_task0"])] == [
        "mscoco_task0", "fashioniq_task7"]
    instructions = load_instructions(root / "instructions" / "query_instructions.tsv")
    assert query_prompt(instructions, 7, 7, "x").startswith("With the reference image")
    with pytest.raises(ValueError, match="x: no instruction for '7, text, text'"):
        query_prompt(instructions, 7, 1, "x")
    qrels = load_qrels(root / "qrels" / "test" / "mbeir_fashioniq_task7_test_qrels.txt")
    assert qrels.relevant["7:3"] == ["7:102", "7:103"] and qrels.task_ids["7:3"] == 7

    bad = tmp_path / "q.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [
        {"qid": "9:1", "query_txt": "a dog", "query_img_path": None, "query_modality": "text", "pos_cand_list": []},
        {"qid": "nine", "query_txt": "x", "query_modality": "text"},
        {"qid": "9:3", "query_txt": None, "query_img_path": None, "query_modality": "image,text"},
        {"qid": "9:4", "query_txt": "x", "query_modality": "audio"},
    ]) + "\n")
    errors = MalformedRows()
    assert [x.qid for x in iter_mbeir_queries(bad, errors)] == ["9:1"]
    assert errors.count == 3 and [e.split(": ")[0] for e in errors.examples] == [f"{bad}:{n}" for n in (2, 3, 4)]
    with pytest.raises(RowError, match=f"{bad}:2: 'qid' must be"):
        list(iter_mbeir_queries(bad))
    qrels_file = tmp_path / "qrels.txt"
    qrels_file.write_text("9:1 0 9:5 1 0\n9:1 0 9:6 0 0\nbroken line\n")
    errors = MalformedRows()
    assert load_qrels(qrels_file, errors).relevant == {"9:1": ["9:5"]}  # relevance 0 is not relevant
    assert errors.examples[0].startswith(f"{qrels_file}:3:")


def test_mbeir_pool_reader_encodes_candidates_with_their_images(tmp_path):
    from rag.ingest import IngestConfig, make_reader

    root = _mbeir_root(tmp_path)
    pool = root / "cand_pool" / "global" / "mbeir_union_test_cand_pool.jsonl"
    (root / "mbeir_images" / "fashioniq_images" / "B007001.jpg").unlink()
    errors = MalformedRows()
    passages = [p for p, _ in make_reader("mbeir", pool, IngestConfig(), errors).passages()]
    # an image-only candidate whose image is missing cannot be encoded: reported with file and line
    assert len(passages) == 31 and errors.count == 1 and errors.examples[0].startswith(f"{pool}:12: passage 7:101")
    text = next(p for p in passages if p.id == "2:300")
    assert text.text == "The Great Wall of China is over 21,000 kilometres long." and text.image is None
    image = next(p for p in passages if p.id == "9:500")
    assert image.text == "" and image.payload["modality"] == "image"
    assert image.image == str(root / "mbeir_images" / "mscoco_images" / "val2014" / "COCO_val2014_000000400000.jpg")


# ----------------------------------------------------------------------------------------- end to end


def _images(root: Path, relative_paths, skip=()) -> None:
    rng = np.random.default_rng(0)
    for rel in relative_paths:
        if rel and rel not in skip:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)


def _config(tmp: Path, encoder_type: str = "ret2") -> Path:
    path = tmp / f"tiny-{encoder_type}.yaml"
    path.write_text(json.dumps({
        "encoder": {"name_or_path": "tiny-random/clip", "revision": "seed0", "device": "cpu", "type": encoder_type},
        "store": {"path": str(tmp / "store"), "hnsw": {"m": 16, "ef_construct": 64, "hnsw_ef": 64}},
        "ingest": {"batch_size": 16}, "generator": None,
    }))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_m2kr_ret_jsonl_end_to_end_and_resume(tmp_path, capsys):
    queries, passages = FIXTURES / "m2kr" / "ret" / "okvqa_test.jsonl", FIXTURES / "m2kr" / "ret" / "okvqa_passages_test.jsonl"
    images = tmp_path / "images"
    q_rows, p_rows = _rows(queries), _rows(passages)
    missing = q_rows[5]["image_path"]
    _images(images, [r["image_path"] for r in q_rows] + [r["passage_image_path"] for r in p_rows], skip={missing})
    out = tmp_path / "run"
    args = ["eval", "m2kr", "--config", str(_config(tmp_path)), "--queries", str(queries), "--passages", str(passages),
            "--images", str(images), "--out", str(out), "--no-progress"]
    assert main([*args, "--limit", "20"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n"] == 20 and set(first["per_task"]) == {"okvqa"}
    assert first["per_task"]["okvqa"]["index"]["indexed_this_run"] == 36

    assert main(args) == 0  # all 24 queries: only the 4 new ones are retrieved, nothing is re-indexed
    metrics = json.loads(capsys.readouterr().out)
    keys = {f"{m}@{k}" for m in ("recall", "pseudo_recall") for k in M2KR_KS}
    assert keys <= set(metrics) and keys | {"n", "n_pseudo", "index"} <= set(metrics["per_task"]["okvqa"])
    task = metrics["per_task"]["okvqa"]
    assert metrics["n"] == task["n"] == 24 and task["n_pseudo"] == 24 and metrics["n_retrieved_this_run"] == 4
    assert task["index"]["indexed_this_run"] == 0 and task["index"]["passages"] == 36 and task["index"]["complete"]
    assert all(0.0 <= metrics[k] <= 1.0 for k in keys) and metrics["recall@50"] == 1.0  # 36 passages < 50
    assert [metrics[f"recall@{k}"] for k in M2KR_KS] == sorted(metrics[f"recall@{k}"] for k in M2KR_KS)
    assert metrics["missing_images"]["queries"] == 1
    assert metrics["missing_images"]["query_examples"][0].startswith(f"{queries}:6: image not found:")

    rows = _rows(out / "retrieval.jsonl")
    assert len(rows) == 24 and {r["id"] for r in rows} == {r["data_id"] for r in q_rows}
    assert all(set(r) == {"task", "id", "hit_rank", "pseudo_rank", "retrieved"} and len(r["retrieved"]) == 36
               for r in rows)
    scores = [p["score"] for p in rows[0]["retrieved"]]
    assert scores == sorted(scores, reverse=True)
    # the stored rankings give the reported numbers
    by_id = {r["id"]: r for r in rows}
    ranks = [by_id[r["data_id"]]["hit_rank"] for r in q_rows]
    assert metrics["recall@5"] == sum(1 for r in ranks if r is not None and r <= 5) / 24
    assert (out / "report.md").read_text().startswith("# m2kr: 24 queries, 1 task(s)")
    assert "| okvqa (n=24) |" in (out / "report.md").read_text()
    assert (out / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"

    assert main(args) == 0  # a rerun with everything done retrieves and indexes nothing, same numbers
    again = json.loads(capsys.readouterr().out)
    assert again["n_retrieved_this_run"] == 0 and again["recall@5"] == metrics["recall@5"]
    assert main([*args, "--depth", "10"]) == 2  # other settings would mix rankings: refused
    assert "holds predictions made with other settings (retrieval_depth: 100 -> 10)" in capsys.readouterr().err


def test_eval_m2kr_dataset_layout_malformed_rows_and_task_images(tmp_path, capsys):
    data = _m2kr_dataset(tmp_path)
    images = tmp_path / "M2KR_Images"
    for task in ("EVQA", "Infoseek"):
        _images(images / task, [r["img_path"] for r in _rows(FIXTURES / "m2kr" / "original" / f"{task}_data" / "test.jsonl")])
    bad = data / "EVQA_data" / "test-00000-of-00001.parquet"
    rows = _rows(FIXTURES / "m2kr" / "original" / "EVQA_data" / "test.jsonl")
    rows[2]["pos_item_ids"] = []
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), bad)
    args = ["eval", "m2kr", "--config", str(_config(tmp_path)), "--data", str(data), "--tasks", "evqa,Infoseek",
            "--images", str(images), "--out", str(tmp_path / "run"), "--no-progress", "--ks", "1,5,10"]
    assert main(args) == 2  # strict by default: the malformed row stops the run, naming file and row
    assert capsys.readouterr().err.startswith(f"error: {bad}:3: missing positive")
    assert main([*args, "--lenient"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and list(metrics["per_task"]) == ["EVQA", "Infoseek"]
    assert metrics["per_task"]["EVQA"]["n"] == 11 and metrics["per_task"]["Infoseek"]["n"] == 5
    assert metrics["malformed_rows"]["queries"] == 1 and metrics["malformed_rows"]["query_examples"][0].startswith(f"{bad}:3:")
    assert metrics["missing_images"]["queries"] == 0  # found under M2KR_Images/<Task>/
    assert set(metrics) >= {"recall@1", "recall@5", "recall@10", "pseudo_recall@10"}
    assert metrics["per_task"]["EVQA"]["index"]["collection"] != metrics["per_task"]["Infoseek"]["index"]["collection"]


def _mbeir_root(tmp: Path) -> Path:
    root = tmp / "M-BEIR"
    shutil.copytree(FIXTURES / "mbeir" / "M-BEIR", root)
    paths = [r.get("query_img_path") or r.get("img_path") for f in (*root.glob("query/test/*.jsonl"),
                                                                   *root.glob("cand_pool/local/*.jsonl")) for r in _rows(f)]
    _images(root, paths)
    return root


def test_eval_mbeir_local_and_union_pools(tmp_path, capsys):
    root = _mbeir_root(tmp_path)
    config = _config(tmp_path)
    base = ["eval", "mbeir", "--config", str(config), "--root", str(root), "--split", "test", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    local = json.loads(capsys.readouterr().out)
    per_task = local["per_task"]
    assert list(per_task) == ["mscoco_task0", "webqa_task1", "fashioniq_task7"] and local["pool"] == "local"
    assert {k for k in per_task["mscoco_task0"] if k.startswith("recall@")} == {"recall@1", "recall@5", "recall@10"}
    assert {k for k in per_task["fashioniq_task7"] if k.startswith("recall@")} == {"recall@10", "recall@20", "recall@50"}
    assert per_task["fashioniq_task7"] | {"dataset": "FashionIQ", "task_id": 7, "task": "image,text -> image",
                                          "headline": "recall@10", "n": 6} == per_task["fashioniq_task7"]
    assert per_task["fashioniq_task7"]["recall@10"] == 1.0  # the pool has 10 candidates
    assert local["average"] == pytest.approx(
        (per_task["mscoco_task0"]["recall@5"] + per_task["webqa_task1"]["recall@5"] + 1.0) / 3)
    assert len({m["index"]["collection"] for m in per_task.values()}) == 3
    assert [m["index"]["passages"] for m in per_task.values()] == [12, 10, 10]
    rows = _rows(tmp_path / "local" / "retrieval.jsonl")
    assert len(rows) == 20 and all("pseudo_rank" not in r for r in rows)
    assert "Average (UniIR's convention" in (tmp_path / "local" / "report.md").read_text()

    union_args = [*base, "--pool", "union", "--tasks", "webqa,mscoco", "--out", str(tmp_path / "union")]
    assert main(union_args) == 0
    union = json.loads(capsys.readouterr().out)
    collections = {m["index"]["collection"] for m in union["per_task"].values()}
    assert len(collections) == 1 and collections.pop().startswith("mbeir-union-test-")
    assert all(m["index"]["passages"] == 32 for m in union["per_task"].values())
    assert main(union_args) == 0  # resumed: nothing re-indexed or re-retrieved
    again = json.loads(capsys.readouterr().out)
    assert again["n_retrieved_this_run"] == 0
    assert all(m["index"]["indexed_this_run"] == 0 for m in again["per_task"].values())


def test_eval_mbeir_zero_shot_baseline_ranks_identical_text_first(tmp_path, capsys):
    """A real check of the whole path (encoder → store → ranking → metric): with the zero-shot dual
    encoder and no instruction, a query whose text is its candidate's text is retrieved first."""
    root = _mbeir_root(tmp_path)
    pool = {r["did"]: r["txt"] for r in _rows(root / "cand_pool" / "local" / "mbeir_webqa_task1_cand_pool.jsonl")}
    queries = root / "query" / "test" / "mbeir_webqa_task1_test.jsonl"
    queries.write_text("".join(json.dumps({**r, "query_txt": pool[r["pos_cand_list"][0]]}) + "\n" for r in _rows(queries)))
    args = ["eval", "mbeir", "--config", str(_config(tmp_path, "dual_encoder")), "--root", str(root), "--tasks",
            "webqa_task1", "--no-instruction", "--exact", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["per_task"]["webqa_task1"]["recall@1"] == 1.0 and metrics["average"] == 1.0
    assert metrics["encoder"] == "tiny-random/clip" and "--no-instruction" in " ".join(metrics["notes"])


def test_eval_retrieval_arguments_are_checked(tmp_path, capsys):
    config = str(_config(tmp_path))
    queries = str(FIXTURES / "m2kr" / "ret" / "okvqa_test.jsonl")
    assert main(["eval", "m2kr", "--config", config, "--queries", queries, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: --passages: required with --queries")
    assert main(["eval", "m2kr", "--config", config, "--queries", queries, queries, "--passages", queries,
                 "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "2 --queries files but 1 --passages files" in capsys.readouterr().err
    assert main(["eval", "mbeir", "--config", config, "--root", str(FIXTURES / "mbeir" / "M-BEIR"), "--tasks",
                 "cirr", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: --tasks: no task 'cirr'")
    assert main(["eval", "mbeir", "--config", config, "--root", str(FIXTURES / "mbeir" / "M-BEIR"), "--split",
                 "val", "--out", str(tmp_path / "o")]) == 2
    assert "M-BEIR val query folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "m2kr", "--config", config, "--data", "d", "--queries", queries, "--out", "o"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_eval_m2kr_missing_and_unreadable_query_images(tmp_path, capsys):
    queries, passages = FIXTURES / "m2kr" / "ret" / "okvqa_test.jsonl", FIXTURES / "m2kr" / "ret" / "okvqa_passages_test.jsonl"
    rows = _rows(queries)[:4]
    small = tmp_path / "q.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in rows))
    images = tmp_path / "images"
    _images(images, [r["image_path"] for r in rows], skip={rows[0]["image_path"]})
    (images / rows[2]["image_path"]).write_bytes(b"not an image")
    args = ["eval", "m2kr", "--config", str(_config(tmp_path)), "--queries", str(small), "--passages", str(passages),
            "--images", str(images), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--missing-images", "error"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {small}:1: image not found: {images / rows[0]['image_path']}")
    assert "--missing-images text_only" in err
    (images / rows[0]["image_path"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(images / rows[1]["image_path"], images / rows[0]["image_path"])
    assert main([*args, "--out", str(tmp_path / "b"), "--missing-images", "error"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {small}:3: ")  # the unreadable one, by file and line
    assert main([*args, "--out", str(tmp_path / "c")]) == 0  # default: encoded from its text, counted
    missing = json.loads(capsys.readouterr().out)["missing_images"]
    assert missing["queries"] == 1 and missing["query_examples"][0].startswith(f"{small}:3: ")
