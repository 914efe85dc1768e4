"""MultimodalGenerator on tiny random models of every supported family.

The models are real ``transformers`` architectures with random weights, so the answers
are meaningless, but everything around them is real: chat templates, image placeholder
expansion, left-padded batched greedy generation, decoding and post-processing, and
loading a saved checkpoint through AutoProcessor / AutoModelForImageTextToText.
"""

import dataclasses
import warnings

import pytest
import torch
from PIL import Image

from generator import (
    GenerationRequest,
    GenerationResult,
    GeneratorConfig,
    MultimodalGenerator,
    Passage,
    postprocess_answer,
)
from rag.tiny_models import (
    GENERATOR_FAMILIES,
    build_tiny_generator,
    missing_requirements,
    save_tiny_generator_checkpoint,
)

PASSAGES = [
    Passage(title="Eiffel Tower", text="The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889."),
    Passage(title="Colosseum", text="The Colosseum is an elliptical amphitheatre in the centre of Rome, Italy. " * 4),
    Passage(title="Cat", text="The domestic cat is a small carnivorous mammal."),
]


def families():
    return [
        pytest.param(f, marks=pytest.mark.skipif(bool(missing_requirements(f)), reason=f"{f} needs {missing_requirements(f)}"))
        for f in GENERATOR_FAMILIES
    ]


@pytest.fixture(scope="module")
def images(fixtures_dir):
    photo = Image.open(fixtures_dir / "images" / "rocket.jpg").convert("RGB")
    return {"cat": fixtures_dir / "images" / "chelsea.png", "rocket": photo, "small": photo.resize((24, 40))}


def mixed_requests(images):
    """Images of different sizes, with and without passages, and text-only questions."""
    return [
        GenerationRequest("Which year was this building completed?", images["rocket"], PASSAGES),
        GenerationRequest("What animal is this?", images["cat"], PASSAGES[2:]),
        GenerationRequest("Where is the Eiffel Tower?", None, PASSAGES[:1]),
        GenerationRequest("What is shown here?", images["small"], []),
        GenerationRequest("Who built the Colosseum?", None, []),
        GenerationRequest("What is in the picture?", images["cat"], PASSAGES[:2]),
    ]


@pytest.mark.parametrize("family", families())
def test_family_generates_and_batching_does_not_change_answers(family, images, tmp_path):
    gen = build_tiny_generator(family, seed=0, context_token_budget=160)
    assert gen.model_type == family
    requests = mixed_requests(images)

    batched = gen.generate(requests, batch_size=4)
    one_by_one = [gen.generate([r], batch_size=1)[0] for r in requests]
    assert batched == one_by_one

    for request, result in zip(requests, batched):
        assert isinstance(result, GenerationResult)
        assert result.raw_text, "a random model still emits tokens"
        assert result.answer == postprocess_answer(result.raw_text)
        built = gen.build_prompt(request.question, request.image, request.passages)
        assert result.prompt == built.text
        assert result.prompt_tokens == built.num_tokens <= 160
        assert (result.passages_used, result.truncated) == (built.passages_used, built.truncated)
    assert batched[0].truncated and batched[0].passages_used < len(PASSAGES)  # three passages do not fit in 160
    assert [r.passages_used for r in batched[3:5]] == [0, 0]
    assert "Context:" not in batched[4].prompt

    # the same model saved and loaded through AutoProcessor / AutoModelForImageTextToText answers the same
    directory = save_tiny_generator_checkpoint(family, tmp_path / family, seed=0)
    loaded = MultimodalGenerator.from_config(
        GeneratorConfig(model=str(directory), dtype="float32", device_map="cpu", max_new_tokens=8, context_token_budget=160)
    )
    assert loaded.model_type == family
    assert loaded.generate(requests, batch_size=3) == batched


def test_same_seed_same_model_other_seed_other_weights(images):
    first, again, other = (build_tiny_generator("qwen2_vl", seed=s) for s in (0, 0, 1))
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert any(not torch.equal(t, other.model.state_dict()[n]) for n, t in first.model.state_dict().items())
    requests = mixed_requests(images)[:3]
    assert first.generate(requests) == again.generate(requests)
    assert [r.raw_text for r in first.generate(requests)] != [r.raw_text for r in other.generate(requests)]


def test_building_a_tiny_generator_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_generator("idefics3", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_zero_shot_and_retrieval_use_the_same_generator(images):
    gen = build_tiny_generator("idefics3")
    with_passages, zero_shot = gen.generate(
        [
            GenerationRequest("What is this?", images["rocket"], PASSAGES[:2]),
            GenerationRequest("What is this?", images["rocket"], []),
        ]
    )
    assert with_passages.passages_used == 2 and "Context:\n[1] Eiffel Tower:" in with_passages.prompt
    assert zero_shot.passages_used == 0 and "Context" not in zero_shot.prompt
    assert zero_shot.prompt_tokens < with_passages.prompt_tokens


def test_answer_convenience_and_mapping_requests(images):
    gen = build_tiny_generator("llava")
    result = gen.generate([{"question": "What is this?", "image": images["cat"], "passages": PASSAGES[:1]}])[0]
    assert gen.answer("What is this?", images["cat"], PASSAGES[:1]) == result.answer
    with pytest.raises(ValueError, match="request 0: .*question"):
        gen.generate([{"query": "What is this?"}])
    with pytest.raises(TypeError, match="request 1: expected a GenerationRequest"):
        gen.generate([GenerationRequest("a"), "b"])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        gen.answer("What is this?", "/nonexistent/missing.png")


def test_results_keep_input_order_across_windows_and_groups(images):
    gen = build_tiny_generator("qwen2_vl")
    requests = mixed_requests(images) * 2  # 12 requests: several windows at batch_size=1 (window of 4)
    assert gen.generate(requests, batch_size=1, progress=True) == gen.generate(requests, batch_size=5)
    assert gen.generate([]) == []


def test_decoding_settings(images):
    gen = build_tiny_generator("qwen2_vl", max_new_tokens=8)
    assert (gen.generation_config.do_sample, gen.generation_config.num_beams) == (False, 1)
    assert gen.generation_config.max_new_tokens == 8
    request = [GenerationRequest("What is this?", images["rocket"], PASSAGES[:1])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        long_answer = gen.generate(request)[0]
    assert not [w for w in caught if "temperature" in str(w.message) or "top_p" in str(w.message)]

    short = MultimodalGenerator(gen.model, gen.processor, dataclasses.replace(gen.config, max_new_tokens=1))
    short_answer = short.generate(request)[0]
    assert len(short.tokenizer(short_answer.raw_text, add_special_tokens=False)["input_ids"]) <= 1 < len(
        gen.tokenizer(long_answer.raw_text, add_special_tokens=False)["input_ids"]
    )
    assert long_answer.raw_text.startswith(short_answer.raw_text)  # greedy: the first token is the same

    raw = MultimodalGenerator(gen.model, gen.processor, dataclasses.replace(gen.config, postprocess=False))
    assert raw.generate(request)[0].answer == long_answer.raw_text.strip()


def test_sampling_is_reproducible_with_a_seed(images):
    greedy = build_tiny_generator("qwen2_vl", max_new_tokens=12)
    sampling = dataclasses.replace(greedy.config, do_sample=True, temperature=1.5, seed=7)
    gen = MultimodalGenerator(greedy.model, greedy.processor, sampling)
    request = [GenerationRequest("What is this?", images["rocket"], PASSAGES[:1])]
    first = gen.generate(request)[0]
    assert [gen.generate(request)[0] for _ in range(2)] == [first, first]
    unseeded = MultimodalGenerator(greedy.model, greedy.processor, dataclasses.replace(sampling, seed=None))
    assert len({unseeded.generate(request)[0].raw_text for _ in range(4)}) > 1  # it does sample
