"""``sdpa_unpadded`` (generator/attention.py): the same attention as SDPA with a padding mask,
computed per prompt in prefill; and the same answers from every tiny family when selected."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import generator.attention as attention
from generator import GenerationRequest, Passage
from generator.attention import NAME, _prefill_pieces, unpadded_sdpa_attention
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


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("pads", [[0, 2, 5, 9, 1], [3, 0]])
def test_prefill_spread_over_threads_is_bit_identical(monkeypatch, threads, groups, pads):
    torch.manual_seed(0)
    batch, heads, dim, length = len(pads), 4, 8, 12
    q = torch.randn(batch, heads, length, dim)
    k, v = (torch.randn(batch, heads // groups, length, dim) for _ in range(2))
    pad_mask = torch.ones(batch, length, dtype=torch.bool)
    for b, p in enumerate(pads):
        pad_mask[b, :p] = False
    module = _Module(groups)
    monkeypatch.setattr(attention, "spare_threads", lambda: 1)
    with torch.inference_mode():
        alone = unpadded_sdpa_attention(module, q, k, v, pad_mask)[0]
    called_from = set()
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        import threading

        called_from.add(threading.current_thread().name)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention, "spare_threads", lambda: threads)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    with torch.inference_mode():  # the helpers run under the caller's mode (inplace writes to inference tensors)
        spread = unpadded_sdpa_attention(module, q, k, v, pad_mask)[0]
    assert torch.equal(spread, alone)
    assert len(called_from) == min(threads, batch)  # the calling thread and its helpers
    assert sum(name.startswith("ret2vqa-prefill") for name in called_from) == len(called_from) - 1


def test_prefill_pieces_cover_every_row_once_balanced_by_cost():
    rows = [(0, 100), (1, 90), (2, 20), (3, 10), (4, 80)]
    assert _prefill_pieces(rows, workers=2) == [[0, 2, 3], [1, 4]]  # 100²+20²+10² vs 90²+80²
    assert _prefill_pieces(rows, workers=1) == [[0, 1, 4, 2, 3]]
    assert _prefill_pieces(rows[:1], workers=4) == [[0]]  # one prompt: one call
    assert _prefill_pieces([], workers=2) == [[]]


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


def test_generation_with_the_prefill_spread_over_threads_gives_the_same_answers(monkeypatch, fixtures_dir):
    from PIL import Image

    photo = Image.open(fixtures_dir / "images" / "rocket.jpg").convert("RGB")
    passages = [Passage(title="Colosseum", text="The Colosseum is an amphitheatre in Rome. " * 3)]
    requests = [GenerationRequest(q, photo, passages) for q in ("Which year was this built?", "What is it?", "Who?")]
    generator = build_tiny_generator("qwen2_vl", seed=0, attn_implementation=NAME)
    monkeypatch.setattr(attention, "spare_threads", lambda: 1)
    alone = generator.generate(requests, batch_size=3)
    monkeypatch.setattr(attention, "spare_threads", lambda: 2)
    assert generator.generate(requests, batch_size=3) == alone
