"""ReT-2 encoder: shapes, invariances, masking, persistence and input errors (tiny random backbones)."""

import numpy as np
import pytest
import torch
from PIL import Image

from rag.tiny_models import build_tiny_encoder, build_tiny_ret2_model, tiny_backbone_config
from retriever import ItemError, ReT2Config, ReT2Encoder, ReT2Model, RetrievalItem
from retriever.modeling_ret2 import enable_activation_checkpointing

BACKBONES = ["clip", "siglip", "siglip2"]


def random_image(seed: int, size=(40, 52)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=BACKBONES)
def encoder(request):
    return build_tiny_encoder(request.param, seed=1)


def mixed_items(fixtures_dir):
    return [
        RetrievalItem(text="The Falcon 9 rocket lifted off from Cape Canaveral."),
        RetrievalItem(image=fixtures_dir / "images" / "rocket.jpg"),
        RetrievalItem(text="Chelsea the cat", image=fixtures_dir / "images" / "chelsea.png"),
        RetrievalItem(text="short"),
        RetrievalItem(image=random_image(3)),
        RetrievalItem(text="an image with a long description " * 3, image=random_image(4)),
    ]


def test_shapes_dtype_and_normalisation(encoder, fixtures_dir):
    vectors = encoder.encode(mixed_items(fixtures_dir))
    assert vectors.shape == (6, encoder.embedding_dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # different items get different vectors
    assert np.abs(vectors[0] - vectors[3]).max() > 1e-4


def test_batch_order_independence_and_one_by_one(encoder, fixtures_dir):
    items = mixed_items(fixtures_dir)
    batched = encoder.encode(items, batch_size=6)
    perm = [4, 2, 0, 5, 1, 3]
    permuted = encoder.encode([items[i] for i in perm], batch_size=6)
    np.testing.assert_allclose(permuted, batched[perm], atol=1e-5)
    singly = np.stack([encoder.encode([item])[0] for item in items])
    np.testing.assert_allclose(singly, batched, atol=1e-5)
    small_batches = encoder.encode(items, batch_size=2)
    np.testing.assert_allclose(small_batches, batched, atol=1e-5)


def test_deterministic_in_eval_mode(encoder, fixtures_dir):
    items = mixed_items(fixtures_dir)
    np.testing.assert_array_equal(encoder.encode(items), encoder.encode(items))


def _model_inputs(encoder, texts, images):
    return dict(encoder.processor(texts, images))


def _set_masks(inputs, text_mask=None, image_mask=None):
    """Override the processor's masks; its Python presence data goes, so the model reads the masks."""
    for key in ("text_presence", "image_presence", "text_rows", "image_rows"):
        inputs.pop(key, None)
    if text_mask is not None:
        inputs["text_mask"] = text_mask
    if image_mask is not None:
        inputs["image_mask"] = image_mask
    return inputs


@pytest.mark.parametrize("backbone", BACKBONES)
def test_masked_modality_has_no_effect(backbone):
    encoder = build_tiny_encoder(backbone, seed=2)
    model = encoder.model
    texts = ["a red square", "a blue circle"]
    a = _model_inputs(encoder, texts, [random_image(10), random_image(11)])
    b = _model_inputs(encoder, texts, [random_image(20), random_image(21)])
    # image content differs between a and b, but the image mask is off
    for inputs in (a, b):
        _set_masks(inputs, image_mask=torch.zeros(2))
    with torch.inference_mode():
        ea = model(**a).embeddings
        eb = model(**b).embeddings
        full = model(**_model_inputs(encoder, texts, [random_image(10), random_image(11)])).embeddings
    assert not torch.allclose(a["pixel_values"], b["pixel_values"])
    torch.testing.assert_close(ea, eb, rtol=0, atol=0)
    assert (ea - full).abs().max() > 1e-4  # with the mask on, the image does matter

    # likewise for text: different tokens, text mask off
    images = [random_image(30), random_image(31)]
    c = _model_inputs(encoder, ["first text", "second text"], images)
    d = _model_inputs(encoder, ["completely different", "words here!!"], images)
    for inputs in (c, d):
        _set_masks(inputs, text_mask=torch.zeros(2))
    with torch.inference_mode():
        torch.testing.assert_close(model(**c).embeddings, model(**d).embeddings, rtol=0, atol=0)
    # and a text-masked item equals the same image encoded alone as an image-only item
    alone = encoder.encode([RetrievalItem(image=images[0])])
    with torch.inference_mode():
        np.testing.assert_allclose(model(**c).embeddings[0].numpy(), alone[0], atol=1e-5)


def test_cell_gates_zero_for_missing_modality():
    """The gate equations: with image_mask = 0 the image input gate and forget term vanish."""
    from retriever.modeling_ret2 import ModalityTokens

    model = build_tiny_ret2_model("clip", seed=5).eval()
    batch, width = 3, model.config.hidden_size
    state = model.ret_cell.initial_state(batch).clone()
    text = ModalityTokens(torch.randn(batch, 4, width), None, None)
    vision_a = ModalityTokens(torch.randn(batch, 5, width), None, None)
    vision_b = ModalityTokens(torch.randn(batch, 5, width), None, None)
    text_on, image_off = torch.ones(batch), torch.zeros(batch)
    with torch.inference_mode():
        out_a = model.ret_cell(state, text, vision_a, text_on, image_off)
        out_b = model.ret_cell(state, text, vision_b, text_on, image_off)
        out_none = model.ret_cell(state, text, None, text_on, image_off)
        out_on = model.ret_cell(state, text, vision_a, text_on, torch.ones(batch))
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(out_a, out_none, rtol=0, atol=0)
    assert (out_on - out_a).abs().max() > 1e-4


def test_save_and_load_round_trip(tmp_path, fixtures_dir):
    encoder = build_tiny_encoder("clip", seed=7, num_layers=5, text_layers=[0, 2, 4], vision_layers=[1, 2, 3])
    items = mixed_items(fixtures_dir)
    before = encoder.encode(items)
    encoder.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    loaded = ReT2Encoder.from_pretrained(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(loaded.encode(items), before)
    ignore = {"_name_or_path", "dtype"}

    def strip(d):
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in d.items() if k not in ignore}

    assert strip(loaded.config.to_dict()) == strip(encoder.config.to_dict())
    assert loaded.config.text_layers == [0, 2, 4] and loaded.config.vision_layers == [1, 2, 3]
    # pruning: blocks after the deepest tapped layer are not kept
    assert len(loaded.model.vision_model.encoder.layers) == 4
    assert len(loaded.fingerprint) == 16


def test_config_round_trip(tmp_path):
    config = ReT2Config(backbone_config=tiny_backbone_config("siglip"), num_state_tokens=4, hidden_size=64,
                        embedding_dim=16, forget_gate_bias_prior=1.0, query_instruction="Find:")
    config.save_pretrained(tmp_path)
    loaded = ReT2Config.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.backbone_config.model_type == "siglip"
    assert loaded.num_attention_heads == 1 and loaded.intermediate_size == 256


def test_default_layers_are_first_middle_last():
    config = ReT2Config(backbone_config=tiny_backbone_config("clip", num_layers=12))
    assert config.text_layers == [0, 6, 11]
    assert config.vision_layers == [0, 6, 11]


def test_query_instruction_prefix():
    encoder = build_tiny_encoder("clip")
    assert encoder.query_text("Who built it?") == f"{encoder.config.query_instruction} Who built it?"
    assert encoder.query_text("Who built it?", instruction="") == "Who built it?"
    q = encoder.encode_queries(["Who built it?"], instruction="Find:")
    d = encoder.encode([RetrievalItem(text="Find: Who built it?")])
    np.testing.assert_allclose(q, d, atol=1e-6)


def test_images_in_memory_or_as_files_in_any_batching_give_the_same_vectors(tmp_path):
    """One batch of in-memory images is prepared in the calling thread; files, or several batches,
    go through the decoding threads and the preparer: the vectors are the same."""
    encoder = build_tiny_encoder("clip")
    images = [random_image(seed, size=(48 + seed, 40)) for seed in range(5)]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])  # lossless: the same pixels
    texts = ["a", None, "a longer question about it", "b", None]
    in_memory = encoder.encode_queries(texts, images=images)
    np.testing.assert_allclose(encoder.encode_queries(texts, images=paths, batch_size=2), in_memory, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_queries(texts, images=paths), in_memory, atol=1e-5)


def test_missing_image_path_names_the_item(tmp_path):
    encoder = build_tiny_encoder("clip")
    items = [RetrievalItem(text="ok"), RetrievalItem(text="x", image=tmp_path / "nope.jpg")]
    with pytest.raises(ItemError, match=r"item 1: image file not found: .*nope\.jpg"):
        encoder.encode(items)


def test_unreadable_image_names_the_item(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    encoder = build_tiny_encoder("clip")
    with pytest.raises(ItemError, match=r"item 0: cannot read image .*broken\.jpg"):
        encoder.encode([RetrievalItem(text="t", image=bad)])


def test_bad_image_callback_falls_back_to_text(tmp_path):
    encoder = build_tiny_encoder("clip")
    reported = []
    out = encoder.encode([RetrievalItem(text="a passage", image=tmp_path / "missing.png")],
                         on_bad_image=lambda i, msg: reported.append((i, msg)))
    assert reported and reported[0][0] == 0 and "missing.png" in reported[0][1]
    np.testing.assert_allclose(out, encoder.encode(["a passage"]), atol=1e-6)


def test_item_with_neither_text_nor_image():
    encoder = build_tiny_encoder("clip")
    with pytest.raises(ItemError, match="item 2: has neither text nor image"):
        encoder.encode(["a", "b", RetrievalItem(text="   ")])


def test_config_tapping_missing_layer_is_refused():
    with pytest.raises(ValueError, match=r"ReT2Config\.vision_layers: layer 7 does not exist.*3 blocks"):
        ReT2Config(backbone_config=tiny_backbone_config("clip", num_layers=3), vision_layers=[0, 1, 7])
    with pytest.raises(ValueError, match=r"text_layers .* and vision_layers .* must have the same length"):
        ReT2Config(backbone_config=tiny_backbone_config("clip"), text_layers=[0, 2], vision_layers=[0, 1, 2])


def test_unsupported_backbone_is_refused():
    from transformers import BertConfig

    with pytest.raises(ValueError, match="unsupported backbone model_type 'bert'"):
        ReT2Model(ReT2Config(backbone_config=BertConfig()))


def test_fingerprint_is_the_same_for_a_hub_style_snapshot_and_a_copy(tmp_path):
    """A cached snapshot links weights to blobs named by their SHA-256: same fingerprint as a plain copy."""
    import hashlib
    import os
    import shutil

    encoder = build_tiny_encoder("clip", seed=9)
    plain = tmp_path / "plain"
    encoder.save_pretrained(plain)
    weights = (plain / "model.safetensors").read_bytes()
    blobs = tmp_path / "models--x--y" / "blobs"
    snapshot = tmp_path / "models--x--y" / "snapshots" / ("a" * 40)
    blobs.mkdir(parents=True)
    shutil.copytree(plain, snapshot)
    blob = blobs / hashlib.sha256(weights).hexdigest()
    blob.write_bytes(weights)
    (snapshot / "model.safetensors").unlink()
    os.symlink(os.path.relpath(blob, snapshot), snapshot / "model.safetensors")
    a = ReT2Encoder.from_pretrained(str(plain)).fingerprint
    b = ReT2Encoder.from_pretrained(str(snapshot)).fingerprint
    assert a == b
    other = build_tiny_encoder("clip", seed=10)
    other.save_pretrained(tmp_path / "other")
    assert ReT2Encoder.from_pretrained(str(tmp_path / "other")).fingerprint != a


def reference_embeddings(model: ReT2Model, inputs: dict) -> torch.Tensor:
    """The cell equations of docs/retriever.md, written plainly on the model's own weights.

    Every hidden state is computed with ``output_hidden_states``, every attention is a plain
    ``nn.MultiheadAttention`` call on the whole batch (masked modalities included, then
    switched off by their gates): none of the model's shortcuts (tapping hooks, shared
    first-step queries, skipped rows, fused key/value projections) are used here.
    """
    cfg, cell = model.config, model.ret_cell
    extra = {k: v for k, v in inputs.items() if k in model.spec.extra_vision_inputs}
    tower_mask = inputs["attention_mask"] if model.spec.pass_text_attention_mask else None
    text_hidden = model.text_model(input_ids=inputs["input_ids"], attention_mask=tower_mask,
                                   output_hidden_states=True).hidden_states
    vision_hidden = model.vision_model(pixel_values=inputs["pixel_values"], output_hidden_states=True,
                                       **extra).hidden_states
    text_padding = inputs["attention_mask"] == 0
    image_padding = extra["pixel_attention_mask"] == 0 if "pixel_attention_mask" in extra else None
    tm = inputs["text_mask"].float()[:, None, None]
    im = inputs["image_mask"].float()[:, None, None]
    state = cell.query_hidden_states.expand(inputs["input_ids"].shape[0], -1, -1)
    for step, (lt, lv) in enumerate(zip(cfg.text_layers, cfg.vision_layers)):
        x = state + cell.query_state_ids
        xn = cell.xa_ln(x)
        r = x + cell.sa(xn, xn, xn, need_weights=False)[0]
        tk = cell.text_ln(model.text_adapter[step](text_hidden[lt + 1]))
        vk = cell.vision_ln(model.vision_adapter[step](vision_hidden[lv + 1]))
        t = cell.text_xa(xn, tk, tk, key_padding_mask=text_padding, need_weights=False)[0]
        v = cell.vision_xa(xn, vk, vk, key_padding_mask=image_padding, need_weights=False)[0]
        i_t = torch.sigmoid(cell.text_input_gate_w(t) + cfg.input_gate_bias_prior) * tm
        i_v = torch.sigmoid(cell.vision_input_gate_w(v) + cfg.input_gate_bias_prior) * im
        f = torch.sigmoid(tm * cell.text_forget_gate_w(t) + im * cell.vision_forget_gate_w(v)
                          + cfg.forget_gate_bias_prior)
        new = f * r + i_t * t + i_v * v
        state = new + cell.mlp(cell.mlp_ln(new))
    return torch.nn.functional.normalize(model.late_proj(state.mean(dim=1)), dim=-1)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_matches_the_documented_equations(backbone):
    encoder = build_tiny_encoder(backbone, seed=11, forget_gate_bias_prior=0.5, input_gate_bias_prior=-0.3)
    model = encoder.model.eval()
    texts = ["a red square on grass", "x", "a much longer description of a blue circle", "two words"]
    inputs = _model_inputs(encoder, texts, [random_image(40 + i) for i in range(4)])
    _set_masks(inputs, text_mask=torch.tensor([1.0, 1.0, 0.0, 1.0]),  # item 2: image only
               image_mask=torch.tensor([1.0, 0.0, 1.0, 1.0]))  # item 1: text only
    with torch.inference_mode():
        got = model(**inputs).embeddings
        want = reference_embeddings(model, inputs)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)

    # Training mode (dropout is 0 in the tiny cell): same values and same gradients, so the
    # in-place steps of the forward are autograd-safe, partial masks included.
    model.train()
    weights = torch.randn(got.shape)

    def gradients(embed) -> dict[str, torch.Tensor]:
        model.zero_grad()
        (embed(model, inputs) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    mine = gradients(lambda m, x: m(**x).embeddings)
    reference = gradients(reference_embeddings)
    assert mine.keys() == reference.keys() and any(n.startswith("ret_cell.text_forget") for n in mine)
    for name in mine:
        torch.testing.assert_close(mine[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)
    model.eval()


def test_gradient_checkpointing_gives_the_same_gradients():
    """Tapping by hooks must survive activation checkpointing (the towers re-run in backward)."""
    encoder = build_tiny_encoder("clip", seed=12)
    inputs = _model_inputs(encoder, ["a red square", "a blue circle"], [random_image(50), random_image(51)])

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = build_tiny_encoder("clip", seed=12).model.train()
        if checkpointing:
            enable_activation_checkpointing(model)
        out = model(**inputs).embeddings
        (out[0] @ out[1]).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert any(n.startswith("text_model.") for n in plain) and any(n.startswith("vision_model.") for n in plain)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_default_cell_width_follows_the_backbone():
    from transformers import CLIPConfig

    from retriever.configuration_ret2 import default_cell_width

    b32 = ReT2Config(backbone_config=CLIPConfig())  # text 512, vision 768
    assert (b32.hidden_size, b32.num_attention_heads, b32.intermediate_size, b32.embedding_dim) == (512, 8, 2048, 512)
    l14 = ReT2Config(backbone_config=CLIPConfig(text_config={"hidden_size": 768, "num_attention_heads": 12},
                                                vision_config={"hidden_size": 1024, "num_attention_heads": 16}))
    assert (l14.hidden_size, l14.embedding_dim) == (768, 768)
    assert default_cell_width(1280, 1664) == 1024  # OpenCLIP ViT-G/14: capped at ReT-1's width
    explicit = ReT2Config(backbone_config=CLIPConfig(), hidden_size=1024)
    assert (explicit.hidden_size, explicit.num_attention_heads, explicit.embedding_dim) == (1024, 16, 768)
    assert ReT2Config().hidden_size is None  # no backbone: resolved once one is given


def test_explicit_sizes_survive_save_and_load_even_when_they_equal_other_defaults(tmp_path):
    """save_pretrained drops values equal to the class defaults: a resolved width must never be dropped."""
    from transformers import CLIPConfig

    small = CLIPConfig(text_config={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                                    "num_hidden_layers": 2},
                       vision_config={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
                                      "num_hidden_layers": 2, "image_size": 32, "patch_size": 16})
    for kwargs in ({}, {"hidden_size": 1024, "embedding_dim": 768}):
        config = ReT2Config(backbone_config=small, **kwargs)
        config.save_pretrained(tmp_path / str(len(kwargs)))
        loaded = ReT2Config.from_pretrained(tmp_path / str(len(kwargs)))
        assert (loaded.hidden_size, loaded.embedding_dim, loaded.num_attention_heads) == (
            config.hidden_size, config.embedding_dim, config.num_attention_heads)


def test_concurrent_forwards_in_threads_do_not_mix(fixtures_dir):
    """Servers and LangChain's batch() call one encoder from several threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = build_tiny_encoder("clip", seed=13)
    jobs = [[RetrievalItem(text="word " * (1 + 5 * i), image=random_image(60 + i))] * (1 + i % 3) for i in range(8)]
    serial = [encoder.encode(items) for items in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(encoder.encode, jobs), serial):
                np.testing.assert_allclose(got, want, atol=1e-5)
