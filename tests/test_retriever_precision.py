"""Mixed precision and compilation of ReT-2: autocast with partial modalities, no host syncs, no graph breaks.

CPU autocast (bfloat16) takes the same code paths as CUDA autocast: attention and linear
outputs in bfloat16, layer norms and the residual stream in float32. That mix is what
crashed the first bf16 training step on a GPU (``index_copy`` of bfloat16 rows into a
float32 batch) when some items of a batch had no image.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from rag.tiny_models import build_tiny_encoder, build_tiny_ret2_model
from retriever.modeling_ret2 import ModalityTokens, Presence


def random_image(seed: int, size=(40, 52)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))


# text-only, image-only and text+image items in one batch
MIXED = (["a red square", None, "a much longer description of a blue circle", "x"],
         [None, random_image(1), random_image(2), random_image(3)])
ALL_PRESENT = (["a red square", "b", "a much longer description of a blue circle", "x"],
               [random_image(4), random_image(1), random_image(2), random_image(3)])


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_cell_forward_and_backward_under_autocast_with_partial_modalities():
    model = build_tiny_ret2_model("clip", seed=3).train()
    cell, width, batch = model.ret_cell, model.config.hidden_size, 5
    text_rows, image_rows = torch.tensor([0, 1, 3]), torch.tensor([1, 2, 4])  # 0, 3 text-only; 2, 4 image-only
    text = ModalityTokens(torch.randn(3, 6, width, requires_grad=True), torch.zeros(3, 6, dtype=torch.bool),
                          text_rows)
    vision = ModalityTokens(torch.randn(3, 4, width, requires_grad=True), None, image_rows)
    text_mask = torch.zeros(batch).index_fill_(0, text_rows, 1.0)
    image_mask = torch.zeros(batch).index_fill_(0, image_rows, 1.0)
    state = torch.randn(batch, cell.num_state_tokens, width, requires_grad=True)  # a float32 residual
    with autocast():
        out = cell(state, text, vision, text_mask, image_mask)
    assert out.dtype == torch.float32  # the residual stream keeps its width
    out.float().square().sum().backward()
    for tensor in (state, text.tokens, vision.tokens, cell.vision_xa.in_proj_weight, cell.text_input_gate_w.weight):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    with torch.no_grad():
        reference = cell(state, text, vision, text_mask, image_mask)
    torch.testing.assert_close(out.detach(), reference, rtol=0.05, atol=0.05)  # bfloat16 rounding only


@pytest.mark.parametrize("backbone", ["clip", "siglip2"])
@pytest.mark.parametrize("batch", [MIXED, ALL_PRESENT], ids=["mixed", "all-present"])
def test_model_forward_and_backward_under_autocast(backbone, batch):
    encoder = build_tiny_encoder(backbone, seed=4)
    model = encoder.model.train()
    inputs = dict(encoder.processor(*batch))
    with autocast():
        embeddings = model(**inputs).embeddings
    weights = torch.randn(embeddings.shape)
    (embeddings.float() * weights).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("ret_cell.vision_xa") for n in grads) and any(n.startswith("text_adapter") for n in grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    model.eval()
    with torch.no_grad():
        full = model(**inputs).embeddings
        with autocast():
            half = model(**inputs).embeddings
    cosine = torch.nn.functional.cosine_similarity(full, half.float(), dim=-1)
    assert cosine.min() > 0.99, cosine


def test_processor_presence_is_plain_python_data():
    encoder = build_tiny_encoder("clip", seed=1)
    inputs = encoder.processor(*MIXED)
    assert (inputs["text_presence"], inputs["image_presence"]) == ("some", "some")
    assert inputs["text_rows"].tolist() == [0, 2, 3] and inputs["image_rows"].tolist() == [1, 2, 3]
    full = encoder.processor(*ALL_PRESENT)
    assert (full["text_presence"], full["image_presence"]) == ("all", "all")
    assert "text_rows" not in full and "image_rows" not in full
    text_only = encoder.processor(["a", "b"], [None, None])
    assert (text_only["text_presence"], text_only["image_presence"]) == ("all", "none")


@pytest.mark.parametrize("backbone", ["clip", "siglip", "siglip2"])
def test_presence_from_the_processor_gives_the_vectors_of_the_masks(backbone):
    """The Python presence path (no host reads) against the masks-only path, which reads the
    masks once; the masks-only path is itself checked against the documented equations
    (tests/test_retriever_model.py::test_model_matches_the_documented_equations)."""
    encoder = build_tiny_encoder(backbone, seed=5)
    model = encoder.model.eval()
    for batch in (MIXED, ALL_PRESENT):
        inputs = dict(encoder.processor(*batch))
        masks_only = {k: v for k, v in inputs.items() if k not in
                      ("text_presence", "image_presence", "text_rows", "image_rows")}
        with torch.inference_mode():
            torch.testing.assert_close(model(**inputs).embeddings, model(**masks_only).embeddings, rtol=0, atol=0)


def test_presence_errors():
    encoder = build_tiny_encoder("clip", seed=1)
    model = encoder.model.eval()
    inputs = dict(encoder.processor(*MIXED))
    with pytest.raises(ValueError, match="image_rows is required"):
        model(**{**inputs, "image_rows": None})
    with pytest.raises(ValueError, match="text_presence must be one of"):
        model(**{**inputs, "text_presence": "most"})
    with pytest.raises(ValueError, match="every item needs text, an image, or both"):
        Presence.from_masks(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))


def _graph_breaks(model, inputs) -> tuple[int, list[str]]:
    torch._dynamo.reset()
    with torch.inference_mode():
        explained = torch._dynamo.explain(model)(**inputs)
    return explained.graph_break_count, [r.reason.splitlines()[0] for r in explained.break_reasons]


def test_forward_compiles_without_graph_breaks():
    """``torch.compile`` captures the whole forward: no ``.item()``, ``.all()`` or ``nonzero``
    on the way (SigLIP 2's own tower checks shapes with ``.item()``; that is transformers')."""
    encoder = build_tiny_encoder("clip", seed=6)
    model = encoder.model.eval()
    for batch in (MIXED, ALL_PRESENT):
        breaks, reasons = _graph_breaks(model, dict(encoder.processor(*batch)))
        assert breaks == 0, reasons


def test_compiled_forward_gives_the_eager_vectors():
    """The traced path (hooks recording into a plain attribute instead of a context variable)
    gives the eager vectors; the ``eager`` backend needs no C++ compiler."""
    encoder = build_tiny_encoder("clip", seed=7)
    model = encoder.model.eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch._dynamo.reset()
    for batch in (MIXED,):
        inputs = dict(encoder.processor(*batch))
        with torch.inference_mode():
            torch.testing.assert_close(compiled(**inputs).embeddings, model(**inputs).embeddings, rtol=0, atol=1e-6)


def test_bf16_training_steps_run_on_cpu(tmp_path):
    """``mixed_precision: bf16`` through accelerate (CPU autocast): queries are image-only and
    documents text-only, so every step scatters partial rows, the path that crashed on CUDA.
    The 150-step loss check of the tiny synthetic config runs in bench/gpu.sh."""
    from rag.components import build_training_encoder
    from retriever.training import DataConfig, ModelInitConfig, Trainer, TrainingConfig
    from retriever.training.synthetic import write_shapes_dataset

    train_file, _ = write_shapes_dataset(tmp_path / "shapes", per_class=2, val_per_class=1, seed=0)
    cfg = TrainingConfig(output_dir=str(tmp_path / "run"), model=ModelInitConfig(backbone="tiny-random/clip"),
                         data=DataConfig(train_file=str(train_file), num_workers=0), batch_size=8, max_steps=3,
                         warmup_steps=1, learning_rate=1e-3, save_every=1000, log_every=1, mixed_precision="bf16")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # an earlier test's trainer set "no" process-wide
    try:
        trainer = Trainer(cfg, build_training_encoder(cfg.model, seed=cfg.seed))
        before = trainer.accelerator.unwrap_model(trainer.model).ret_cell.vision_xa.in_proj_weight.detach().clone()
        trainer.train()
        after = trainer.accelerator.unwrap_model(trainer.model).ret_cell.vision_xa.in_proj_weight.detach()
    finally:  # accelerate keeps its mixed-precision setting process-wide: later tests train without
        AcceleratorState._reset_state(reset_partial_state=True)
    assert len(trainer.history) == 3 and all(np.isfinite(h["loss"]) for h in trainer.history)
    assert (after - before).abs().max() > 0


def test_encoder_compile_option(tmp_path):
    """``encoder.compile`` in the config compiles the ReT-2 model in the composition root; the
    compiled encoder pads texts to a fixed length and gives the eager vectors."""
    from rag.components import build_encoder
    from ret2vqa.config import ConfigError
    from retriever import EncoderConfig

    config = EncoderConfig(name_or_path="tiny-random/clip", revision="seed3", compile="reduce-overhead")
    assert build_encoder(config).compiled == "reduce-overhead"
    assert build_encoder(EncoderConfig(name_or_path="tiny-random/clip", revision="seed3")).compiled is None
    with pytest.raises(ConfigError, match="compile"):
        EncoderConfig(name_or_path="x", type="dual_encoder", compile=True)
    with pytest.raises(ConfigError):
        EncoderConfig(name_or_path="x", compile="fast")

    encoder = build_tiny_encoder("clip", seed=3)
    items = [{"text": t, "image": im} for t, im in zip(*MIXED)]
    eager = encoder.encode(items)
    torch._dynamo.reset()
    encoder.compile(True, backend="eager")  # the same capture without a C++ compiler
    assert encoder.processor(["ab"], [None], pad_to_max_length=True)["input_ids"].shape[1] == \
        encoder.model.config.max_text_length
    np.testing.assert_allclose(encoder.encode(items), eager, atol=1e-6)
    encoder.compile(False)
    assert encoder._forward is encoder.model


def test_presence_without_masks_builds_the_gate_masks_from_the_rows():
    encoder = build_tiny_encoder("clip", seed=8)
    model = encoder.model.eval()
    inputs = dict(encoder.processor(*MIXED))
    no_masks = {k: v for k, v in inputs.items() if k not in ("text_mask", "image_mask")}
    with torch.inference_mode():
        torch.testing.assert_close(model(**no_masks).embeddings, model(**inputs).embeddings, rtol=0, atol=0)


def test_a_query_image_gives_the_same_vector_as_a_path_or_a_decoded_image(tmp_path):
    """Queries decode images at full size (only indexing decodes document files at reduced scale),
    so `ask` (a path) and `serve` (uploaded bytes, decoded) embed the same question identically."""
    path = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    encoder = build_tiny_encoder("clip", seed=2)
    assert encoder.image_decode_size  # document files are decoded at reduced scale
    from_path = encoder.encode_queries(["What is this?"], images=[str(path)])
    with Image.open(path) as img:
        decoded = img.convert("RGB")
    from_image = encoder.encode_queries(["What is this?"], images=[decoded])
    np.testing.assert_array_equal(from_path, from_image)
    # documents from a path take the reduced-scale decode (the fast indexing path): still close
    document = encoder.encode_documents([None], images=[str(path)])
    assert float(np.dot(document[0], encoder.encode_documents([None], images=[decoded])[0])) > 0.99
