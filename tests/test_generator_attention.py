"""``sdpa_unpadded`` (generator/attention.py): the same attention as SDPA with a padding mask,
computed per prompt in prefill; and the same answers from every tiny family when selected."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from generator import GenerationRequest, Passage
from generator.attention import NAME, unpadded_sdpa_attention
from rag.tiny_models import GENERATOR_FAMILIES, build_tiny_generator, missing_requirements


class _Module(torch.nn.Module):
    is_causal = True

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups


def _reference(module, q, k, v, pad_mask, offset):
    """transformers' sdpa with an explicit 4D mask (padding and causal, keys ``offset`` ahead of queries)."""
    q_len, kv_len = q.shape[2], k.shape[2]
    causal = torch.arange(kv_len)[None, :] <= torch.arange(q_len)[:, None] + offset
    mask = pad_mask[:, None, None, :] & causal[None, None]
    return sdpa_attention_forward(module, q, k, v, mask, is_causal=True)[0]


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("q_len,kv_len", [(9, 9), (1, 12), (3, 12)])  # prefill, a decoding step, a chunk after a cache
def test_matches_masked_sdpa_on_real_positions(groups, q_len, kv_len):
    torch.manual_seed(0)
    batch, heads, dim = 3, 4, 8
    q = torch.randn(batch, heads, q_len, dim)
    k, v = (torch.randn(batch, heads // groups, kv_len, dim) for _ in range(2))
    pads = [0, 2, 5]
    pad_mask = torch.ones(batch, kv_len, dtype=torch.bool)
    for b, p in enumerate(pads):
        pad_mask[b, :p] = False
    module = _Module(groups)
    got = unpadded_sdpa_attention(module, q, k, v, pad_mask)[0]
    want = _reference(module, q, k, v, pad_mask, kv_len - q_len)
    assert got.shape == want.shape == (batch, q_len, heads, dim)
    for b, p in enumerate(pads):  # the padded queries' outputs are never used
        first = max(0, p - (kv_len - q_len))
        torch.testing.assert_close(got[b, first:], want[b, first:], rtol=1e-5, atol=1e-5)


def test_no_padding_is_plain_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    module = _Module(1)
    got = unpadded_sdpa_attention(module, q, k, v, None)[0]
    torch.testing.assert_close(got, sdpa_attention_forward(module, q, k, v, None)[0])


@pytest.mark.parametrize("family", [
    pytest.param(f, marks=pytest.mark.skipif(bool(missing_requirements(f)), reason=f"{f} needs {missing_requirements(f)}"))
    for f in GENERATOR_FAMILIES
])
def test_every_family_answers_the_same_with_it(family, fixtures_dir):
    from PIL import Image

    photo = Image.open(fixtures_dir / "images" / "rocket.jpg").convert("RGB")
    passages = [Passage(title="Colosseum", text="The Colosseum is an amphitheatre in Rome. " * 3),
                Passage(title="Cat", text="The domestic cat is a small mammal.")]
    requests = [GenerationRequest("Which year was this built?", photo, passages),
                GenerationRequest("What is it?", photo.resize((24, 40)), passages[1:]),
                GenerationRequest("Who built the Colosseum?", None, passages),
                GenerationRequest("Why?", None, [])]
    plain = build_tiny_generator(family, seed=0)
    unpadded = build_tiny_generator(family, seed=0, attn_implementation=NAME)
    text_config = getattr(unpadded.model.config, "text_config", unpadded.model.config)
    assert text_config._attn_implementation == NAME
    batched = unpadded.generate(requests, batch_size=4)
    assert batched == plain.generate(requests, batch_size=4)
    assert batched == [unpadded.generate([r], batch_size=1)[0] for r in requests]


def test_a_loaded_checkpoint_switches_its_language_model_only(tmp_path):
    from generator import GeneratorConfig, MultimodalGenerator
    from rag.tiny_models import save_tiny_generator_checkpoint

    directory = save_tiny_generator_checkpoint("qwen2_vl", tmp_path / "qwen2_vl", seed=0)
    loaded = MultimodalGenerator.from_config(GeneratorConfig(model=str(directory), dtype="float32", device_map="cpu",
                                                             max_new_tokens=4, attn_implementation=NAME))
    config = loaded.model.config
    assert (config.text_config._attn_implementation, config.vision_config._attn_implementation) == (NAME, "sdpa")
    requests = [GenerationRequest("What is it?", None, [Passage(title="Cat", text="A small mammal.")]),
                GenerationRequest("Why is the sky blue?", None, [])]
    plain = build_tiny_generator("qwen2_vl", seed=0, max_new_tokens=4)
    assert [r.raw_text for r in loaded.generate(requests)] == [r.raw_text for r in plain.generate(requests)]
