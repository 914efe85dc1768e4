"""Cutting photos towards the size a model's processor resizes them to (ret2vqa.images)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rag.tiny_models import (
    GENERATOR_FAMILIES,
    build_tiny_generator_processor,
    build_tiny_ret2_processor,
    missing_requirements,
)
from ret2vqa.images import REDUCING_GAP, image_side, reduce_to_side


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_reduce_to_side_box_averages_by_the_largest_factor_that_keeps_twice_the_side():
    image = photo(640, 427)
    reduced = reduce_to_side(image, 32)  # 427 // 64 = 6
    assert reduced.size == (107, 72) and min(reduced.size) >= REDUCING_GAP * 32
    pixels = np.asarray(image, dtype=np.float64)
    block = pixels[6:12, 12:18].mean(axis=(0, 1))  # output pixel (row 1, column 2) averages a 6x6 block
    np.testing.assert_allclose(np.asarray(reduced)[1, 2], block, atol=0.51)


@pytest.mark.parametrize("size, side", [((100, 80), 32), ((640, 427), None), ((640, 427), 0), ((127, 127), 32)])
def test_reduce_to_side_keeps_images_that_are_small_enough_or_without_a_known_side(size, side):
    image = photo(*size)
    assert reduce_to_side(image, side) is image
    assert reduce_to_side(None, 32) is None


def test_reduce_to_side_is_idempotent():
    once = reduce_to_side(photo(1024, 768), 32)
    assert reduce_to_side(once, 32) is once


TINY_GENERATOR_SIDES = {"qwen2_vl": 32, "qwen2_5_vl": 32, "idefics3": 32, "smolvlm": 32, "llava": 16,
                        "llava_next": 32, "llava_onevision": 32}


@pytest.mark.parametrize("family", GENERATOR_FAMILIES)
def test_image_side_of_each_generator_family(family):
    if missing_requirements(family):
        pytest.skip(f"needs {missing_requirements(family)}")
    assert image_side(build_tiny_generator_processor(family).image_processor) == TINY_GENERATOR_SIDES[family]


@pytest.mark.parametrize("backbone", ["clip", "siglip", "siglip2"])
def test_image_side_of_each_encoder_backbone(backbone):
    assert image_side(build_tiny_ret2_processor(backbone, image_size=32).image_processor) == 32


def test_image_side_reads_qwen2_vl_pixel_budgets_as_pixels_not_edges():
    """Qwen2-VL's ``size`` counts pixels (``longest_edge`` = max_pixels): the side is its square root."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    assert image_side(Qwen2VLImageProcessorPil(max_pixels=12845056)) == 3584  # Qwen2-VL's released budget
    assert image_side(Qwen2VLImageProcessorPil(min_pixels=64, max_pixels=1000, patch_size=4, merge_size=2,
                                               temporal_patch_size=2)) == 32  # ceil(sqrt(1000))


def test_image_side_is_unknown_for_a_processor_without_sizes():
    assert image_side(None) is None
    assert image_side(object()) is None


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3", "llava_next"])
def test_a_cut_photo_gives_the_processor_the_same_layout_as_the_whole_photo(family):
    """The cut keeps at least twice the side the processor resizes to, so what it makes of a photo
    (tiles, patch grid) stays the same. ``image_sizes`` (LLaVA-NeXT) is the input's own size, so it
    is not compared."""
    if missing_requirements(family):
        pytest.skip(f"needs {missing_requirements(family)}")
    processor = build_tiny_generator_processor(family)
    side = image_side(processor.image_processor)
    for size in [(640, 427), (384, 256), (300, 900), (1600, 1200)]:
        image = photo(*size)
        whole = processor.image_processor([image], return_tensors="pt")
        cut = processor.image_processor([reduce_to_side(image, side)], return_tensors="pt")
        assert whole["pixel_values"].shape == cut["pixel_values"].shape, size
        for key in ("image_grid_thw", "rows", "cols"):
            if key in whole:
                assert np.array_equal(np.asarray(whole[key]), np.asarray(cut[key])), (size, key)


def test_a_cut_photo_moves_a_qwen2_vl_grid_by_at_most_one_step_at_a_rounding_boundary():
    """Qwen2-VL rounds the resized sides to its 8-pixel merge factor from the image's own size, so a
    photo whose scaled side falls on a boundary (2000 x 1999: 3.998 steps) may round the other way."""
    processor = build_tiny_generator_processor("qwen2_vl").image_processor
    image = photo(2000, 1999)
    whole = processor([image], return_tensors="pt")["image_grid_thw"]
    cut = processor([reduce_to_side(image, image_side(processor))], return_tensors="pt")["image_grid_thw"]
    assert (whole - cut).abs().max() <= processor.merge_size
