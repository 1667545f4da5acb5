"""Tiny SD3 twin + random InstantX-style IP-Adapter (SigLIP, one reference)."""

from __future__ import annotations

import numpy as np
import pytest

from generator_service.families import family_module, stable_diffusion_3

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
    spec = packaged_spec("tiny-sd3")
    return family_module(spec).load(spec, "cpu")


def test_protocol_attributes(generator):
    assert (generator.key, generator.family, generator.max_references) == ("tiny-sd3", "sd3", 1)
    assert generator.image_encoder_id == "tiny-sd3/siglip#hidden_states[-2]"


def test_reproducible_per_seed(generator):
    check_reproducible(generator, [reference_image(0)], seeds=[1, 2])


def test_different_reference_gives_a_different_image(generator):
    check_reference_changes_image(generator, [reference_image(0)], [reference_image(1)])


def test_reference_free_generation_and_scale_zero_agree(generator):
    plain = generator.generate(make_inputs())[0]
    scaled_off = generator.generate(make_inputs(references=[reference_image(0)], ip_scale=0.0))[0]
    conditioned = generator.generate(make_inputs(references=[reference_image(0)]))[0]
    assert np.array_equal(pixels(plain), pixels(scaled_off))
    assert not np.array_equal(pixels(plain), pixels(conditioned))


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_precomputed_embeddings_reproduce_the_image_path(generator, guidance):
    refs = [reference_image(3)]
    embeds = generator.encode_references(refs)
    assert embeds.shape[:2] == (2, 1) and not embeds[0].any()  # zeros negative first
    from_images = generator.generate(make_inputs(references=refs, guidance=guidance))[0]
    from_embeds = generator.generate(make_inputs(reference_embeds=embeds, guidance=guidance))[0]
    assert np.array_equal(pixels(from_images), pixels(from_embeds))


def test_cancel_mid_run_returns_no_image(generator):
    check_cancel_aborts_without_image(generator, [reference_image(0)])


def test_two_references_are_a_clear_error(generator):
    check_too_many_references_rejected(generator)
    with pytest.raises(ValueError, match="at most 1 reference image, got 2"):
        generator.generate(make_inputs(reference_embeds=generator.encode_references([reference_image(0)] * 2)))


def test_more_than_one_reference_cannot_be_configured():
    with pytest.raises(ValueError, match="one reference"):
        stable_diffusion_3.load(packaged_spec("tiny-sd3", max_references=2), "cpu")


def test_requested_size_is_honoured(generator):
    check_sizes_honoured(generator, [(64, 64), (128, 64), (32, 96)])


def test_size_must_be_a_multiple_of_16(generator):
    with pytest.raises(ValueError, match="multiple of 16"):
        generator.generate(make_inputs(width=72))
