"""Released ReT checkpoints: build them in the reference's saved layout, convert, compare with the reference forward.

The checkpoints are made here from tiny ``CLIPTextConfig`` / ``CLIPVisionConfig`` towers
with every weight moved off its init, in the layout ``../shared/docs/ret1-checkpoints.md``
gives (keys, shapes, transformers 4.x and 5.x tower nesting, one file or two shards,
shared or separate query/passage cells, pooled or per-token heads). ``reference_embed``
is a plain transcription of the reference forward (modeling_ret.py of aimagelab/ReT):
our converted encoder must give the same vectors and scores (float32, < 1e-4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

from rag.tiny_models import build_tiny_ret2_processor, tiny_backbone_config
from ret2vqa.errors import ConfigError, MissingFileError
from retriever import ReT2Encoder
from retriever.convert import ConversionError, convert_checkpoint, is_released_checkpoint

H, T, D, STEPS = 128, 6, 16, 12  # cell width (2 heads of 64), state tokens, late_proj size, clip_vit_b steps
INSTRUCTION = "Retrieve documents that provide an answer to the question alongside the image:"


# ----------------------------------------------------------------------------------------
# Checkpoints in the reference layout
# ----------------------------------------------------------------------------------------


def tower_configs():
    base = tiny_backbone_config("clip", num_layers=12, image_size=32)
    text = CLIPTextConfig(**{**base.text_config.to_dict(), "hidden_act": "quick_gelu"})
    vision = CLIPVisionConfig(**{**base.vision_config.to_dict(), "hidden_act": "quick_gelu"})
    return text, vision


def moved_off_init(module: torch.nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The module's weights, each perturbed so that nothing is left at its init value."""
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point() or key.endswith("position_ids"):
            state[key] = value
            continue
        state[key] = value + 0.05 * torch.randn(value.shape, generator=gen)
    return state


def sinusoid(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(1, n, d)
    table[..., 0::2] = torch.sin(pos * div)
    table[..., 1::2] = torch.cos(pos * div)
    return table


def cell_weights(prefix: str, gen: torch.Generator, d_t: int, d_v: int, priors: tuple[float, float]) -> dict:
    def rnd(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / math.sqrt(shape[-1])
        return scale * torch.randn(shape, generator=gen)

    w = {}
    for i in range(STEPS):
        w[f"{prefix}.text_adapter.{i}.weight"], w[f"{prefix}.text_adapter.{i}.bias"] = rnd(H, d_t), rnd(H, scale=0.1)
        w[f"{prefix}.vision_adapter.{i}.weight"], w[f"{prefix}.vision_adapter.{i}.bias"] = rnd(H, d_v), rnd(H, scale=0.1)
    c = f"{prefix}.ret_cell"
    w[f"{c}.query_hidden_states"] = rnd(1, T, H, scale=0.5)
    w[f"{c}.query_state_ids"] = sinusoid(T, H)
    w[f"{c}.sa.in_proj_weight"], w[f"{c}.sa.in_proj_bias"] = rnd(3 * H, H), rnd(3 * H, scale=0.1)
    w[f"{c}.sa.out_proj.weight"], w[f"{c}.sa.out_proj.bias"] = rnd(H, H), rnd(H, scale=0.1)
    for xa in ("text_xa", "vision_xa"):
        w[f"{c}.{xa}.in_proj_weight"], w[f"{c}.{xa}.out_proj.weight"] = rnd(3 * H, H), rnd(H, H)
    w[f"{c}.mlp.0.weight"], w[f"{c}.mlp.0.bias"] = rnd(4 * H, H), rnd(4 * H, scale=0.1)
    w[f"{c}.mlp.3.weight"], w[f"{c}.mlp.3.bias"] = rnd(H, 4 * H), rnd(H, scale=0.1)
    for gate in ("text_input", "text_forget", "vision_input", "vision_forget"):
        w[f"{c}.{gate}_gate_w.weight"], w[f"{c}.{gate}_gate_w.bias"] = rnd(H, H), rnd(H, scale=0.1)
    for ln in ("xa_ln", "text_ln", "vision_ln", "mlp_ln", "sa_ln"):
        w[f"{c}.{ln}.weight"], w[f"{c}.{ln}.bias"] = 1.0 + rnd(H, scale=0.1), rnd(H, scale=0.1)
    w[f"{c}.input_gate_bias_prior"] = torch.tensor(priors[0])
    w[f"{c}.forget_gate_bias_prior"] = torch.tensor(priors[1])
    w[f"{prefix}.late_proj.weight"] = rnd(D, H)
    return w


def side_config(text, vision, pooled: bool) -> dict:
    return {"model_type": "ret", "text_config": {**text.to_dict(), "_name_or_path": ""},
            "vision_config": {**vision.to_dict(), "_name_or_path": ""}, "layer_strategy": "clip_vit_b",
            "num_queries": T, "hidden_size": H, "late_proj_output_size": D, "use_pooler_features": pooled,
            "dropout_p": 0.05, "attention_dropout": 0.05, "activation_fn": "gelu", "input_gate_bias_prior": 0.0,
            "forget_gate_bias_prior": 0.0, "use_tanh": False, "is_text_frozen": True, "is_vision_frozen": True}


def write_reference_checkpoint(directory: Path, *, nesting: str = "4.x", shards: int = 1, share: bool = False,
                               pooled: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint in the reference's saved layout; returns its tensors."""
    gen = torch.Generator().manual_seed(seed)
    text_cfg, vision_cfg = tower_configs()
    torch.manual_seed(seed)
    towers = {"text_model": moved_off_init(CLIPTextModel(text_cfg), gen),
              "vision_model": moved_off_init(CLIPVisionModel(vision_cfg), gen)}
    weights: dict[str, torch.Tensor] = {}
    for tower, state in towers.items():
        for key, value in state.items():
            inner = f"{tower}.{key}" if nesting == "4.x" else key  # 4.x saves nest the transformer once more
            weights[f"query_model.{tower}.{inner}"] = value
    weights.update(cell_weights("query_model", gen, text_cfg.hidden_size, vision_cfg.hidden_size, (0.3, 0.7)))
    if not share:
        weights.update(cell_weights("passage_model", gen, text_cfg.hidden_size, vision_cfg.hidden_size, (-0.2, 1.1)))
    config = {"model_type": "retriever", "architectures": ["RetrieverModel"],
              "query_config": side_config(text_cfg, vision_cfg, pooled),
              "passage_config": side_config(text_cfg, vision_cfg, pooled),
              "share_query_passage_models": share, "share_text_models": True, "share_vision_models": True,
              "fg_loss": not pooled, "simmetric_loss": True}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    keys = sorted(weights)
    if shards == 1:
        save_file({k: weights[k].contiguous() for k in keys}, str(directory / "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = keys[s::shards]
            save_file({k: weights[k].contiguous() for k in part}, str(directory / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in part})
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}), encoding="utf-8")
    return weights


# ----------------------------------------------------------------------------------------
# The reference forward, transcribed
# ----------------------------------------------------------------------------------------


def layer_norm(x, w, prefix):
    return F.layer_norm(x, (x.shape[-1],), w[f"{prefix}.weight"], w[f"{prefix}.bias"], eps=1e-5)


def mha(q_in, kv_in, w, prefix, heads, key_mask=None):
    """nn.MultiheadAttention(q_in, kv_in, kv_in) written out; key_mask: (B, L) True = attend."""
    h = q_in.shape[-1]
    wq, wk, wv = w[f"{prefix}.in_proj_weight"].split(h)
    bias = w.get(f"{prefix}.in_proj_bias")
    bq, bk, bv = bias.split(h) if bias is not None else (None, None, None)
    q, k, v = F.linear(q_in, wq, bq), F.linear(kv_in, wk, bk), F.linear(kv_in, wv, bv)
    b, n, _ = q.shape
    hd = h // heads
    q, k, v = (x.reshape(b, -1, heads, hd).transpose(1, 2) for x in (q, k, v))
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, h)
    return F.linear(out, w[f"{prefix}.out_proj.weight"], w.get(f"{prefix}.out_proj.bias"))


def tower_states(weights, nesting, input_ids, attention_mask, pixel_values):
    text_cfg, vision_cfg = tower_configs()
    towers = []
    for cls, cfg, name in ((CLIPTextModel, text_cfg, "text_model"), (CLIPVisionModel, vision_cfg, "vision_model")):
        model = cls(cfg).eval()
        prefix = f"query_model.{name}." + (f"{name}." if nesting == "4.x" else "")
        model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=False)
        towers.append(model)
    with torch.no_grad():
        text = towers[0](input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[1:]
        vision = towers[1](pixel_values=pixel_values, output_hidden_states=True).hidden_states[1:]
    return text, vision


def reference_embed(weights, side, text_states, attention_mask, vision_states, text_mask, image_mask, pooled):
    """modeling_ret.py's RetModel forward for one side, with the (1, T, H) state and masks per item."""
    w, c, heads = weights, f"{side}.ret_cell", H // 64
    b = text_mask.shape[0]
    state = w[f"{c}.query_hidden_states"].expand(b, -1, -1)
    pos = w[f"{c}.query_state_ids"]
    tm, im = text_mask[:, None, None], image_mask[:, None, None]
    in_prior, forget_prior = float(w[f"{c}.input_gate_bias_prior"]), float(w[f"{c}.forget_gate_bias_prior"])
    for step in range(STEPS):
        x = state + pos
        xn = layer_norm(x, w, f"{c}.xa_ln")
        residual = x + mha(xn, xn, w, f"{c}.sa", heads)
        text_kv = layer_norm(F.linear(text_states[step], w[f"{side}.text_adapter.{step}.weight"],
                                      w[f"{side}.text_adapter.{step}.bias"]), w, f"{c}.text_ln")
        vision_kv = layer_norm(F.linear(vision_states[step], w[f"{side}.vision_adapter.{step}.weight"],
                                        w[f"{side}.vision_adapter.{step}.bias"]), w, f"{c}.vision_ln")
        t = mha(xn, text_kv, w, f"{c}.text_xa", heads, key_mask=attention_mask.bool())
        v = mha(xn, vision_kv, w, f"{c}.vision_xa", heads)

        def lin(x, name):
            return F.linear(x, w[f"{c}.{name}.weight"], w[f"{c}.{name}.bias"])

        i_t = torch.sigmoid(lin(t, "text_input_gate_w") + in_prior) * tm
        i_v = torch.sigmoid(lin(v, "vision_input_gate_w") + in_prior) * im
        f = torch.sigmoid(tm * lin(t, "text_forget_gate_w") + im * lin(v, "vision_forget_gate_w") + forget_prior)
        new = residual * f + t * i_t + v * i_v
        hidden = F.gelu(lin(layer_norm(new, w, f"{c}.mlp_ln"), "mlp.0"))
        state = new + lin(hidden, "mlp.3")
    proj = w[f"{side}.late_proj.weight"]
    out = F.linear(state.mean(1), proj) if pooled else F.linear(state, proj)
    return F.normalize(out, dim=-1)


def reference_encode(weights, nesting, processor, side, texts, images, pooled):
    """The reference's batch: missing text is "" (text_mask 0), a missing image is black (image_mask 0)."""
    text_mask = torch.tensor([1.0 if t else 0.0 for t in texts])
    image_mask = torch.tensor([1.0 if im is not None else 0.0 for im in images])
    enc = processor.tokenizer([t or "" for t in texts], padding="longest", truncation=True, max_length=77,
                              return_tensors="pt")
    black = Image.new("RGB", (32, 32))
    pixels = processor.image_processor(images=[im if im is not None else black for im in images],
                                       return_tensors="pt")["pixel_values"]
    text_states, vision_states = tower_states(weights, nesting, enc["input_ids"], enc["attention_mask"], pixels)
    with torch.no_grad():
        return reference_embed(weights, side, text_states, enc["attention_mask"], vision_states, text_mask,
                               image_mask, pooled).numpy()


def reference_maxsim(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    scores = np.zeros((len(q), len(d)), dtype=np.float64)
    for i in range(len(q)):
        for j in range(len(d)):
            scores[i, j] = sum(max(float(qt @ dt) for dt in d[j]) for qt in q[i])
    return scores


# ----------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------


def image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("clip-processor")
    processor = build_tiny_ret2_processor("clip", image_size=32)
    processor.tokenizer.save_pretrained(directory)
    processor.image_processor.save_pretrained(directory)
    return directory


CASES = [
    pytest.param(dict(nesting="4.x", shards=1, share=False, pooled=False), id="4x-separate-tokens"),
    pytest.param(dict(nesting="5.x", shards=2, share=False, pooled=True), id="5x-2shards-separate-pooled"),
    pytest.param(dict(nesting="4.x", shards=2, share=True, pooled=False), id="4x-2shards-shared-tokens"),
    pytest.param(dict(nesting="5.x", shards=1, share=True, pooled=True), id="5x-shared-pooled"),
]


@pytest.mark.parametrize("case", CASES)
def test_converted_checkpoint_matches_the_reference_forward(case, tmp_path, processor_dir):
    src = tmp_path / "released"
    weights = write_reference_checkpoint(src, seed=len(str(case)), **case)
    assert is_released_checkpoint(src)
    out = convert_checkpoint(src, tmp_path / "converted", processor=processor_dir)
    encoder = ReT2Encoder.from_pretrained(str(out), device="cpu", dtype="float32")
    assert encoder.config.late_interaction is not case["pooled"]
    assert encoder.config.share_query_passage_models is case["share"]
    assert encoder.config.text_layers == list(range(12)) and encoder.config.num_steps == STEPS
    assert encoder.config.input_gate_bias_prior == pytest.approx(0.3)  # read from the saved buffers

    questions = ["Which year was this building completed?", "Who painted it?", None]
    q_images = [image(1), None, image(2)]  # text+image, text-only, image-only (the instruction alone)
    ours_q = encoder.encode_queries(questions, images=q_images, instruction=INSTRUCTION)
    q_texts = [f"{INSTRUCTION} {q}" if q else INSTRUCTION for q in questions]
    ref_q = reference_encode(weights, case["nesting"], encoder.processor, "query_model", q_texts, q_images,
                             case["pooled"])

    docs = ["The tower was completed in 1889.", None, "A painting of water lilies.", "Claude Monet"]
    d_images = [None, image(3), image(4), None]
    ours_d = encoder.encode_documents(docs, images=d_images)
    doc_side = "query_model" if case["share"] else "passage_model"
    ref_d = reference_encode(weights, case["nesting"], encoder.processor, doc_side, docs, d_images, case["pooled"])

    expected_shape = (D,) if case["pooled"] else (T, D)
    assert ours_q.shape == (3, *expected_shape) and ours_d.shape == (4, *expected_shape)
    assert np.abs(ours_q - ref_q).max() < 1e-4
    assert np.abs(ours_d - ref_d).max() < 1e-4
    ref_scores = ref_q @ ref_d.T if case["pooled"] else reference_maxsim(ref_q, ref_d)
    assert np.abs(encoder.score(ours_q, ours_d) - ref_scores).max() < 1e-4
    if not case["share"]:  # the two sides really differ
        assert np.abs(encoder.encode(["Claude Monet"], side="query") - ours_d[3:]).max() > 1e-3


def test_from_pretrained_converts_a_released_checkpoint_once(tmp_path, processor_dir, monkeypatch):
    monkeypatch.setenv("RET2VQA_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "released"
    write_reference_checkpoint(src, nesting="5.x")
    # The checkpoint ships its processor files, as a user's local copy may.
    for f in processor_dir.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    first = ReT2Encoder.from_pretrained(str(src), device="cpu", dtype="float32")
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert len(converted) == 1 and (converted[0] / "config.json").is_file()
    stamp = (converted[0] / "model.safetensors").stat().st_mtime_ns
    second = ReT2Encoder.from_pretrained(str(src), device="cpu", dtype="float32")
    assert (converted[0] / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not converted again
    assert first.fingerprint == second.fingerprint
    v1, v2 = first.encode(["a tower"]), second.encode(["a tower"])
    np.testing.assert_array_equal(v1, v2)


def test_offline_processor_failure_names_the_flag(tmp_path):
    src = tmp_path / "released"
    write_reference_checkpoint(src)
    config = json.loads((src / "config.json").read_text())
    config["query_config"]["text_config"]["_name_or_path"] = "openai/clip-vit-large-patch14"
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="--processor") as info:
        convert_checkpoint(src, tmp_path / "out")
    assert "openai/clip-vit-large-patch14" in str(info.value)
    assert not (tmp_path / "out").exists()


def _only_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_unknown_model_type_is_refused_by_name(tmp_path, processor_dir):
    src = tmp_path / "released"
    write_reference_checkpoint(src)
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "colbert"
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"config\.json: model_type 'colbert'"):
        convert_checkpoint(src, tmp_path / "out", processor=processor_dir)
    assert _only_entries(tmp_path) == ["released"]


def test_missing_shard_names_the_file(tmp_path, processor_dir):
    src = tmp_path / "released"
    write_reference_checkpoint(src, shards=2)
    (src / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(MissingFileError, match="model-00002-of-00002.safetensors"):
        convert_checkpoint(src, tmp_path / "out", processor=processor_dir)
    assert _only_entries(tmp_path) == ["released"]


def test_truncated_safetensors_names_the_file(tmp_path, processor_dir):
    src = tmp_path / "released"
    write_reference_checkpoint(src)
    path = src / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"model\.safetensors: not a readable safetensors file"):
        convert_checkpoint(src, tmp_path / "out", processor=processor_dir)
    assert _only_entries(tmp_path) == ["released"]


def test_shape_mismatch_and_unmapped_keys_are_listed(tmp_path, processor_dir):
    src = tmp_path / "released"
    weights = write_reference_checkpoint(src)
    weights["query_model.late_proj.weight"] = torch.zeros(D + 1, H)
    weights["query_model.extra_head.weight"] = torch.zeros(2, 2)
    del weights["passage_model.ret_cell.mlp.0.bias"]
    save_file({k: v.contiguous() for k, v in weights.items()}, str(src / "model.safetensors"))
    with pytest.raises(ConversionError) as info:
        convert_checkpoint(src, tmp_path / "out", processor=processor_dir)
    message = str(info.value)
    assert "model_type 'retriever'" in message
    assert "unmapped keys (1): query_model.extra_head.weight" in message
    assert "missing keys (1): document_ret_cell.mlp.0.bias" in message
    assert f"late_proj.weight: checkpoint ({D + 1}, {H}), model ({D}, {H})" in message
    assert _only_entries(tmp_path) == ["released"]


def test_existing_output_is_not_overwritten(tmp_path, processor_dir):
    src = tmp_path / "released"
    write_reference_checkpoint(src)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        convert_checkpoint(src, tmp_path / "out", processor=processor_dir)
    assert _only_entries(tmp_path / "out") == ["keep.txt"]


def test_round_trip_convert_index_search_equals_exact_maxsim(tmp_path, processor_dir):
    from rag.config import PipelineConfig
    from rag.ingest import build_index
    from rag.store import open_store

    src = tmp_path / "released"
    write_reference_checkpoint(src, nesting="4.x", shards=2)
    out = convert_checkpoint(src, tmp_path / "converted", processor=processor_dir)
    kb = tmp_path / "kb.jsonl"
    texts = ["The Eiffel Tower was completed in 1889.", "Water lilies by Claude Monet.", "The Colosseum in Rome.",
             "A domestic cat.", "The Saturn V rocket.", "The Statue of Liberty, New York.", "Mount Fuji, Japan.",
             "Big Ben in London.", "The Golden Gate Bridge.", "The Great Wall of China."]
    kb.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    cfg = PipelineConfig.from_dict({
        "encoder": {"name_or_path": str(out), "device": "cpu", "dtype": "float32"},
        "store": {"path": str(tmp_path / "qdrant"), "collection": "kb"},
        "ingest": {"batch_size": 4},
    }, where="test")
    report = build_index(cfg, kb, "jsonl", show_progress=False)
    assert report.passages_total == len(texts)
    encoder = ReT2Encoder.from_pretrained(str(out), device="cpu", dtype="float32")
    queries = encoder.encode_queries(["When was the tower built?", None], images=[None, image(5)],
                                     instruction=INSTRUCTION)
    docs = encoder.encode_documents(texts)
    exact = reference_maxsim(queries, docs)
    with open_store(cfg.store) as store:
        assert store.metadata.multivector
        hits = store.search_batch(queries, k=len(texts))
    for row, found in zip(exact, hits):
        assert [p.id for p in found] == [f"p{j}" for j in np.argsort(-row)]
        np.testing.assert_allclose([p.score for p in found], np.sort(row)[::-1], atol=1e-4)


def test_convert_command(tmp_path, processor_dir, capsys):
    from rag.cli import main

    src = tmp_path / "released"
    write_reference_checkpoint(src, nesting="5.x", pooled=True)
    assert main(["convert", str(src), str(tmp_path / "out"), "--processor", str(processor_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["head"] == "pooled (one vector)" and summary["output_shape"] == [D]
    assert summary["cells"] == "separate query and document cells" and summary["processor"] == str(processor_dir)
    assert ReT2Encoder.from_pretrained(str(tmp_path / "out")).encode(["x"]).shape == (1, D)
    capsys.readouterr()
    # bad input: one error line, exit status 2, nothing written
    (src / "model.safetensors").write_bytes(b"\x00" * 16)
    assert main(["convert", str(src), str(tmp_path / "out2"), "--processor", str(processor_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "model.safetensors" in err
    assert not (tmp_path / "out2").exists()
