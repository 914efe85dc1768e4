"""A late-interaction encoder through everything above the store: index build, search, ask, eval, the
pipeline, LangChain and training, unchanged; a single-vector encoder is refused by its collection.

``tiny-random/clip-late`` is a tiny random ReT-2 with the released checkpoints' layout (per-token
output compared by MaxSim, separate query and document cells).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rag.cli import main
from rag.components import build_training_encoder
from rag.config import PipelineConfig
from rag.demo import DEMO_DIR, KB_FILE
from rag.pipeline import Pipeline
from rag.store import open_store
from rag.tiny_models import build_tiny_encoder
from retriever.encoder import maxsim_scores
from retriever.training import ContrastiveLoss, DataConfig, ModelInitConfig, Trainer, TrainingConfig
from retriever.training.synthetic import write_shapes_dataset

from conftest import demo_kb_config, write_tiny_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def late_config(tmp_path_factory) -> Path:
    return demo_kb_config(tmp_path_factory.mktemp("late"), encoder={"name_or_path": "tiny-random/clip-late"})


def test_a_multivector_collection_verifies_clean(late_config, capsys):
    """The integrity checks read (T, dim) token sets as healthy, not as damaged vectors."""
    capsys.readouterr()
    assert main(["index", "verify", "--config", str(late_config)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "exact search ok" in out
    assert main(["index", "info", "--config", str(late_config)]) == 0
    assert "PROBLEM" not in capsys.readouterr().out


def test_the_collection_is_multivector_and_search_ranks_by_exact_maxsim(late_config, capsys):
    capsys.readouterr()
    cfg = PipelineConfig.from_yaml(late_config)
    assert main(["index", "info", "--config", str(late_config), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metadata"]["multivector"] is True and info["metadata"]["dim"] == 32
    assert main(["index", "info", "--config", str(late_config)]) == 0
    assert "multivector: MaxSim over token vectors" in capsys.readouterr().out
    image = str(DEMO_DIR / "images" / "coffee.jpg")
    assert main(["search", "--config", str(late_config), "--text", "Where is it from?", "--image", image,
                 "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    encoder = build_tiny_encoder("clip-late")
    query = encoder.encode_queries(["Where is it from?"], images=[image], instruction=cfg.retrieval.instruction)
    with open_store(cfg.store) as store:
        ids = [p.id for p in store.retrieve([h["id"] for h in hits])]
        everything = store.retrieve(_all_ids(store), with_vectors=True)
    docs = np.stack([p.vector for p in everything])
    exact = encoder.score(query, docs)[0]
    assert [h["id"] for h in hits] == [everything[j].id for j in np.argsort(-exact)[:5]] == ids
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(exact)[::-1][:5], atol=1e-4)


def _all_ids(store) -> list[str]:
    lines = KB_FILE.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines if line.strip()]
    assert store.count() == len(ids)
    return ids


def test_ask_eval_pipeline_and_langchain_work_unchanged(late_config, tmp_path, capsys):
    from eval.evqa import load_questions
    from rag.langchain import ReT2Retriever

    image = str(DEMO_DIR / "images" / "coffee.jpg")
    capsys.readouterr()
    assert main(["ask", "--config", str(late_config), "--image", image, "-q", "Where is it from?", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["passages"]) == 3
    csv = REPO / "tests" / "fixtures" / "evqa" / "evqa_test_sample.csv"
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for q in load_questions(csv):
        Image.new("RGB", (32, 32), (90, 20, 200)).save(images / f"{q.image_ids[0]}.jpg")
    assert main(["eval", "evqa", "--config", str(late_config), "--questions", str(csv), "--images", str(images),
                 "--out", str(tmp_path / "run"), "--no-progress", "--ks", "1,5"]) == 0
    assert set(json.loads(capsys.readouterr().out)["retrieval"]["article_recall"]) == {"1", "5"}
    with Pipeline.from_config(str(late_config), load_generator=False) as pipe:
        hits = pipe.retrieve("Where is it from?", image, k=4)
        assert len(hits) == 4 and hits[0].score >= hits[-1].score
        docs = ReT2Retriever(pipeline=pipe, k=2).invoke({"question": "Where is it from?", "image": image})
        assert [d.id for d in docs] == [p.id for p in hits[:2]]


def test_langchain_vector_store_works_and_embeddings_refuse_a_late_interaction_encoder(late_config, tmp_path):
    from rag.langchain import ReT2Embeddings, ReT2VectorStore
    from ret2vqa.errors import ConfigError

    path = write_tiny_config(tmp_path / "vs.yaml", base=late_config, store={"path": str(tmp_path / "vs")})
    with ReT2VectorStore.from_config(str(path)) as store:
        ids = store.add_texts(["The Eiffel Tower is in Paris.", "Coffee comes from Ethiopia."], ids=["eiffel", "coffee"])
        assert sorted(ids) == ["coffee", "eiffel"] and store.store.metadata.multivector
        docs = store.similarity_search("Where is coffee from?", k=2)
        assert sorted(d.id for d in docs) == ["coffee", "eiffel"]
        with pytest.raises(ConfigError, match="late-interaction"):
            store.embeddings
    with pytest.raises(ConfigError, match="use ReT2Retriever or ReT2VectorStore"):
        ReT2Embeddings(build_tiny_encoder("clip-late"))


def test_a_single_vector_encoder_is_refused_by_a_multivector_collection(late_config, tmp_path, capsys):
    other = write_tiny_config(tmp_path / "single.yaml", base=late_config, encoder={"name_or_path": "tiny-random/clip"})
    capsys.readouterr()
    assert main(["search", "--config", str(other), "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert "multivector (late interaction, MaxSim) collection != single-vector encoder" in err


def test_maxsim_infonce_trains_both_cells(tmp_path):
    train_file, _ = write_shapes_dataset(tmp_path / "shapes", per_class=6, val_per_class=2, seed=0)
    cfg = TrainingConfig(output_dir=str(tmp_path / "run"),
                         model=ModelInitConfig(backbone="tiny-random/clip",
                                               cell={"late_interaction": True, "share_query_passage_models": False}),
                         data=DataConfig(train_file=str(train_file), num_workers=0), batch_size=8, max_steps=3,
                         warmup_steps=1, save_every=1000, log_every=1, learning_rate=1e-2)
    encoder = build_training_encoder(cfg.model, seed=cfg.seed)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    result = Trainer(cfg, encoder).train()
    assert result["global_step"] == 3
    after = encoder.model.state_dict()
    for name in ("ret_cell.query_hidden_states", "document_ret_cell.query_hidden_states", "document_late_proj.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_maxsim_loss_matches_its_definition():
    rng = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 3, 8, generator=rng), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(4, 5, 8, generator=rng), dim=-1)
    labels = torch.arange(4)
    loss_fn = ContrastiveLoss(temperature_init=0.1, gather=False)
    loss, _ = loss_fn(q, d, labels)
    scores = torch.tensor([[sum(max(float(qt @ dt) for dt in d[j]) for qt in q[i]) for j in range(4)]
                           for i in range(4)])
    assert torch.allclose(maxsim_scores(q, d), scores, atol=1e-5)
    logits = scores / 3 / 0.1  # MaxSim over 3 query tokens, per token, under the temperature
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                      + torch.nn.functional.cross_entropy(logits.T, labels))
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-4)


def test_paired_forward_embeds_queries_and_documents_with_their_own_sides(fixtures_dir):
    encoder = build_tiny_encoder("clip-late", seed=3)
    texts = ["a question", "another question", "a passage", "another passage"]
    batch = encoder.processor(texts, [None, None, None, None])
    def half(sl: slice) -> dict:  # the same rows, with presence read from the masks
        return {k: v[sl] for k, v in batch.items() if torch.is_tensor(v) and not k.endswith("_rows")}

    with torch.no_grad():
        paired = encoder.model(**batch, side="query+document").embeddings
        queries = encoder.model(**half(slice(0, 2)), side="query").embeddings
        documents = encoder.model(**half(slice(2, None)), side="document").embeddings
    torch.testing.assert_close(paired, torch.cat([queries, documents]))
    assert not torch.allclose(queries, encoder.model(**half(slice(0, 2)), side="document").embeddings)
