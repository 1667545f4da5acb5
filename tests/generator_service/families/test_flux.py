"""Tiny Flux twin: XLabs-style IP-Adapter with true CFG, and the Redux option."""

from __future__ import annotations

import numpy as np
import pytest

from generator_service.families import family_module

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


def _load(key):
    spec = packaged_spec(key)
    return family_module(spec).load(spec, "cpu")


@pytest.fixture(scope="module")
def generator():
    return _load("tiny-flux")


@pytest.fixture(scope="module")
def redux_generator():
    return _load("tiny-flux-redux")


def test_protocol_attributes(generator, redux_generator):
    assert (generator.key, generator.family, generator.max_references) == ("tiny-flux", "flux", 3)
    assert generator.true_cfg_scale == 4.0
    assert generator.image_encoder_id == "tiny-flux/clip-vision#image_embeds"
    assert redux_generator.image_encoder_id == "tiny-flux/siglip#last_hidden_state"


@pytest.mark.parametrize("which", ["generator", "redux_generator"])
def test_reproducible_per_seed(which, request):
    check_reproducible(request.getfixturevalue(which), [reference_image(0), reference_image(1)], seeds=[1, 2])


@pytest.mark.parametrize("which", ["generator", "redux_generator"])
def test_different_reference_gives_a_different_image(which, request):
    check_reference_changes_image(request.getfixturevalue(which), [reference_image(0)], [reference_image(1)])


def test_one_and_three_references_differ(generator):
    check_reference_changes_image(generator, [reference_image(0)], [reference_image(i) for i in range(3)])


@pytest.mark.parametrize("which", ["generator", "redux_generator"])
def test_scale_zero_equals_the_reference_free_output(which, request):
    gen = request.getfixturevalue(which)
    plain = gen.generate(make_inputs())[0]
    scaled_off = gen.generate(make_inputs(references=[reference_image(0)], ip_scale=0.0))[0]
    assert np.array_equal(pixels(plain), pixels(scaled_off))


@pytest.mark.parametrize("which", ["generator", "redux_generator"])
def test_precomputed_embeddings_reproduce_the_image_path(which, request):
    gen = request.getfixturevalue(which)
    refs = [reference_image(i) for i in range(3)]
    from_images = gen.generate(make_inputs(references=refs))[0]
    from_embeds = gen.generate(make_inputs(reference_embeds=gen.encode_references(refs)))[0]
    assert np.array_equal(pixels(from_images), pixels(from_embeds))


def test_negative_prompt_matters_under_true_cfg(generator):
    refs = [reference_image(0)]
    default = generator.generate(make_inputs(references=refs))[0]
    negative = generator.generate(make_inputs(references=refs, negative_prompt="blurry, low quality"))[0]
    assert not np.array_equal(pixels(default), pixels(negative))


@pytest.mark.parametrize("which", ["generator", "redux_generator"])
def test_cancel_mid_run_returns_no_image(which, request):
    check_cancel_aborts_without_image(request.getfixturevalue(which), [reference_image(0)])


def test_too_many_references_is_a_clear_error(generator, redux_generator):
    check_too_many_references_rejected(generator)
    check_too_many_references_rejected(redux_generator)


def test_requested_size_is_honoured(generator):
    check_sizes_honoured(generator, [(64, 64), (128, 64), (32, 96)])


def test_size_must_be_a_multiple_of_16(generator):
    with pytest.raises(ValueError, match="multiple of 16"):
        generator.generate(make_inputs(width=40))
