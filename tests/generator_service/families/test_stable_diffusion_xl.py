"""Tiny SDXL twin + random IP-Adapter (plain and Plus)."""

from __future__ import annotations

import numpy as np
import pytest

from generator_service.families import family_module, stable_diffusion_xl

from .helpers import (
    check_cancel_aborts_without_image,
    check_reference_changes_image,
    check_reproducible,
    check_sizes_honoured,
    check_too_many_references_rejected,
    make_inputs,
    packaged_spec,
    pixels,
    reference_image,
)


@pytest.fixture(scope="module")
def generator():
    spec = packaged_spec("tiny-sdxl")
    return family_module(spec).load(spec, "cpu")


@pytest.fixture(scope="module")
def plus_generator():
    return stable_diffusion_xl.load(packaged_spec("tiny-sdxl", adapter_variant="plus"), "cpu")


def test_protocol_attributes(generator, plus_generator):
    assert (generator.key, generator.family, generator.max_references) == ("tiny-sdxl", "sdxl", 3)
    assert generator.image_encoder_id.endswith("#image_embeds")
    assert plus_generator.image_encoder_id.endswith("#hidden_states[-2]")


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_reproducible_per_seed(which, request):
    check_reproducible(request.getfixturevalue(which), [reference_image(0), reference_image(1)], seeds=[1, 2])


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_different_reference_gives_a_different_image(which, request):
    check_reference_changes_image(request.getfixturevalue(which), [reference_image(0)], [reference_image(1)])


def test_one_and_three_references_differ(generator):
    check_reference_changes_image(generator, [reference_image(0)], [reference_image(i) for i in range(3)])


def test_scale_zero_equals_the_reference_free_output(generator):
    plain = generator.generate(make_inputs())[0]
    scaled_off = generator.generate(make_inputs(references=[reference_image(0)], ip_scale=0.0))[0]
    assert np.array_equal(pixels(plain), pixels(scaled_off))


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_precomputed_embeddings_reproduce_the_image_path(which, request):
    gen = request.getfixturevalue(which)
    refs = [reference_image(i) for i in range(3)]
    from_images = gen.generate(make_inputs(references=refs))[0]
    from_embeds = gen.generate(make_inputs(reference_embeds=gen.encode_references(refs)))[0]
    assert np.array_equal(pixels(from_images), pixels(from_embeds))


def test_cancel_mid_run_returns_no_image(generator):
    check_cancel_aborts_without_image(generator, [reference_image(0)])


def test_too_many_references_is_a_clear_error(generator):
    check_too_many_references_rejected(generator)


def test_requested_size_is_honoured(generator):
    check_sizes_honoured(generator, [(64, 64), (128, 64), (32, 96)])


def test_size_must_be_a_multiple_of_8(generator):
    with pytest.raises(ValueError, match="multiple of 8"):
        generator.generate(make_inputs(height=68))
