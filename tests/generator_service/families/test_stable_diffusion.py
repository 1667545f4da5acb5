"""Tiny SD 1.5 twin + random IP-Adapter: conditioning, reproducibility, cancel, sizes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generator_service.families import family_module, stable_diffusion
from generator_service.families.base import JobCanceled

from .helpers import assert_equal_up_to_batch_rounding, make_inputs, packaged_spec, pixels, reference_image


@pytest.fixture(scope="module")
def generator():
    spec = packaged_spec("tiny-sd")
    return family_module(spec).load(spec, "cpu")


@pytest.fixture(scope="module")
def plus_generator():
    return stable_diffusion.load(packaged_spec("tiny-sd", adapter_variant="plus"), "cpu")


def test_generator_protocol_attributes(generator):
    assert generator.key == "tiny-sd"
    assert generator.family == "sd"
    assert generator.max_references == 3
    assert generator.image_encoder_id == "tiny-sd/clip-vision#image_embeds"


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_same_seed_and_references_reproduce_the_image(which, request):
    gen = request.getfixturevalue(which)
    refs = [reference_image(0), reference_image(1)]
    first = gen.generate(make_inputs(references=refs))
    second = gen.generate(make_inputs(references=refs))
    assert np.array_equal(pixels(first[0]), pixels(second[0]))


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_different_reference_gives_a_different_image(which, request):
    gen = request.getfixturevalue(which)
    a = gen.generate(make_inputs(references=[reference_image(0)]))[0]
    b = gen.generate(make_inputs(references=[reference_image(1)]))[0]
    assert np.abs(pixels(a) - pixels(b)).max() > 2


def test_one_and_three_references_differ(generator):
    one = generator.generate(make_inputs(references=[reference_image(0)]))[0]
    three = generator.generate(make_inputs(references=[reference_image(i) for i in range(3)]))[0]
    assert not np.array_equal(pixels(one), pixels(three))


def test_scale_zero_equals_the_reference_free_output(generator):
    plain = generator.generate(make_inputs())[0]
    scaled_off = generator.generate(make_inputs(references=[reference_image(0)], ip_scale=0.0))[0]
    conditioned = generator.generate(make_inputs(references=[reference_image(0)]))[0]
    assert np.array_equal(pixels(plain), pixels(scaled_off))
    assert not np.array_equal(pixels(plain), pixels(conditioned))


@pytest.mark.parametrize("which", ["generator", "plus_generator"])
def test_precomputed_embeddings_reproduce_the_image_path(which, request):
    gen = request.getfixturevalue(which)
    refs = [reference_image(i) for i in range(3)]
    embeds = gen.encode_references(refs)
    assert embeds.shape[:2] == (2, 3)  # negative half first, one slot per reference
    from_images = gen.generate(make_inputs(references=refs))[0]
    from_embeds = gen.generate(make_inputs(reference_embeds=embeds))[0]
    assert np.array_equal(pixels(from_images), pixels(from_embeds))


def test_guidance_one_uses_only_the_positive_embeddings(generator):
    refs = [reference_image(0)]
    embeds = generator.encode_references(refs)
    from_images = generator.generate(make_inputs(references=refs, guidance=1.0))[0]
    from_embeds = generator.generate(make_inputs(reference_embeds=embeds, guidance=1.0))[0]
    assert np.array_equal(pixels(from_images), pixels(from_embeds))


def test_one_image_per_seed_each_from_its_own_generator(generator):
    refs = [reference_image(0)]
    batch = generator.generate(make_inputs(seeds=[3, 4], references=refs))
    alone = generator.generate(make_inputs(seeds=[4], references=refs))
    assert len(batch) == 2
    assert_equal_up_to_batch_rounding(batch[1], alone[0])
    assert not np.array_equal(pixels(batch[0]), pixels(batch[1]))


def test_progress_is_reported_per_step(generator):
    seen = []
    generator.generate(make_inputs(steps=3, on_step=lambda done, total: seen.append((done, total))))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cancel_from_the_step_callback_aborts_without_an_image(generator):
    seen = []

    def cancel_on_second_step(done, total):
        seen.append(done)
        if done == 2:
            raise JobCanceled("job canceled")

    result = None
    with pytest.raises(JobCanceled):
        result = generator.generate(make_inputs(steps=4, references=[reference_image(0)], on_step=cancel_on_second_step))
    assert result is None
    assert seen == [1, 2]


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 32), (32, 128)])
def test_png_has_the_requested_size(generator, width, height):
    image = generator.generate(make_inputs(width=width, height=height, steps=2))[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).size == (width, height)


def test_size_not_a_multiple_of_8_is_rejected(generator):
    with pytest.raises(ValueError, match="multiple of 8"):
        generator.generate(make_inputs(width=60))


def test_too_many_references_is_rejected(generator):
    with pytest.raises(ValueError, match="at most 3 reference"):
        generator.generate(make_inputs(references=[reference_image(i) for i in range(4)]))


def test_tiny_weights_are_identical_across_loads(generator):
    again = stable_diffusion.load(packaged_spec("tiny-sd"), "cpu")
    refs = [reference_image(2)]
    assert np.array_equal(
        pixels(generator.generate(make_inputs(references=refs))[0]),
        pixels(again.generate(make_inputs(references=refs))[0]),
    )
