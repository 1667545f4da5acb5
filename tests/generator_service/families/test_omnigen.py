"""Tiny OmniGen twin: references in the prompt, ImageRAG template, cancel only via the callback."""

from __future__ import annotations

import numpy as np
import pytest

from generator_service.families import family_module
from generator_service.families.omnigen import rag_prompt

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
    spec = packaged_spec("tiny-omnigen")
    return family_module(spec).load(spec, "cpu")


def test_protocol_attributes(generator):
    assert (generator.key, generator.family, generator.max_references) == ("tiny-omnigen", "omnigen", 3)
    assert generator.image_encoder_id is None
    assert (generator.img_guidance_scale, generator.max_input_image_size) == (1.6, 64)


def test_imagerag_prompt_template():
    assert rag_prompt("a fox in snow", ["red fox", "arctic fox"]) == (
        "According to these images of red fox: <img><|image_1|></img>, "
        "arctic fox: <img><|image_2|></img>, generate a fox in snow"
    )
    assert rag_prompt("a fox", [None]) == "According to these images of <img><|image_1|></img>, generate a fox"
    assert rag_prompt("a fox", []) == "a fox"


def test_reproducible_per_seed(generator):
    # also covers OmniGen's reference VAE sampling, which draws from the global RNG
    check_reproducible(generator, [reference_image(0), reference_image(1)], seeds=[1, 2])


def test_different_reference_gives_a_different_image(generator):
    check_reference_changes_image(generator, [reference_image(0)], [reference_image(1)])


def test_labels_go_into_the_prompt(generator):
    refs = [reference_image(0)]
    unlabeled = generator.generate(make_inputs(references=refs))[0]
    labeled = generator.generate(make_inputs(references=refs, reference_labels=["red fox"]))[0]
    assert not np.array_equal(pixels(unlabeled), pixels(labeled))


def test_scale_zero_means_plain_text_to_image(generator):
    plain = generator.generate(make_inputs())[0]
    scaled_off = generator.generate(make_inputs(references=[reference_image(0)], ip_scale=0.0))[0]
    assert np.array_equal(pixels(plain), pixels(scaled_off))


def test_negative_prompt_is_forwarded(generator):
    default = generator.generate(make_inputs())[0]
    negative = generator.generate(make_inputs(negative_prompt="blurry"))[0]
    assert not np.array_equal(pixels(default), pixels(negative))
    assert generator.pipe.multimodal_processor.__class__.__name__ == "OmniGenMultiModalProcessor"


def test_cancel_mid_run_returns_no_image(generator):
    # OmniGenPipeline never reads `_interrupt`; raising from the callback is what stops it
    check_cancel_aborts_without_image(generator, [reference_image(0)])


def test_too_many_references_is_a_clear_error(generator):
    check_too_many_references_rejected(generator)


def test_precomputed_embeddings_are_rejected(generator):
    import torch

    with pytest.raises(ValueError, match="not precomputed embeddings"):
        generator.generate(make_inputs(reference_embeds=torch.zeros(2, 1, 4)))


def test_labels_must_match_references(generator):
    with pytest.raises(ValueError, match="reference_labels"):
        generator.generate(make_inputs(references=[reference_image(0)], reference_labels=["a", "b"]))


def test_requested_size_is_honoured(generator):
    check_sizes_honoured(generator, [(64, 64), (128, 64), (32, 96)])


def test_size_must_be_a_multiple_of_16(generator):
    with pytest.raises(ValueError, match="multiple of 16"):
        generator.generate(make_inputs(width=40))
