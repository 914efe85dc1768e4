"""The zero-shot dual-encoder baseline (CLIP / SigLIP heads) behind the same encoder interface."""

import numpy as np
import pytest
from PIL import Image

from rag.tiny_models import build_tiny_dual_encoder
from retriever.baseline import DualEncoder


def image(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (36, 44, 3), dtype=np.uint8))


@pytest.mark.parametrize("backbone", ["clip", "siglip", "siglip2"])
def test_fusion_is_the_normalised_sum_of_the_backbone_heads(backbone):
    enc = build_tiny_dual_encoder(backbone, seed=3)
    img = image(1)
    text, picture, both = enc.encode(["a red square", {"image": img}, {"text": "a red square", "image": img}])
    np.testing.assert_allclose(both, (text + picture) / np.linalg.norm(text + picture), atol=1e-6)
    # the text vector is the model's own projected text feature, normalised
    import torch

    tok = enc.tokenizer(["a red square"], padding=enc.spec.text_padding, max_length=enc.max_text_length,
                        truncation=True, return_tensors="pt")
    if not enc.spec.pass_text_attention_mask:
        tok.pop("attention_mask")
    with torch.inference_mode():
        out = enc.model.get_text_features(**tok)
    feats = out if torch.is_tensor(out) else out.pooler_output
    np.testing.assert_allclose(text, torch.nn.functional.normalize(feats, dim=-1)[0].numpy(), atol=1e-6)
    assert enc.default_instruction == "" and enc.query_text("q?") == "q?"


def test_batching_and_reload(tmp_path):
    enc = build_tiny_dual_encoder("clip", seed=4)
    items = ["short", {"image": image(2)}, {"text": "a much longer text " * 4, "image": image(3)}, "x"]
    batched = enc.encode(items, batch_size=4)
    np.testing.assert_allclose(np.stack([enc.encode([i])[0] for i in items]), batched, atol=1e-6)
    enc.model.save_pretrained(tmp_path)
    enc.tokenizer.save_pretrained(tmp_path)
    enc.image_processor.save_pretrained(tmp_path)
    loaded = DualEncoder.from_pretrained(str(tmp_path), max_text_length=enc.max_text_length)
    np.testing.assert_allclose(loaded.encode(items), batched, atol=1e-6)
    assert loaded.embedding_dim == enc.embedding_dim == 16
    assert loaded.fingerprint != build_tiny_dual_encoder("clip", seed=5).fingerprint
