"""ReferenceEmbeddingCache: per-reference safetensors entries that reproduce the image path exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator_service.families import flux, stable_diffusion
from generator_service.reference_cache import ReferenceEmbeddingCache, image_content_key

from .families.helpers import make_inputs, packaged_spec, pixels, reference_image


@pytest.fixture(scope="module")
def sd():
    return stable_diffusion.load(packaged_spec("tiny-sd"), "cpu")


@pytest.fixture(scope="module")
def sd_plus():
    return stable_diffusion.load(packaged_spec("tiny-sd", adapter_variant="plus"), "cpu")


class CountingEncoder:
    """Wraps a generator and counts how many images its image encoder saw."""

    def __init__(self, generator):
        self.generator = generator
        self.image_encoder_id = generator.image_encoder_id
        self.encoded = 0

    def encode_references(self, images):
        self.encoded += len(images)
        return self.generator.encode_references(images)


def test_content_key_depends_on_pixels_not_on_the_file_format():
    image = reference_image(0)
    assert image_content_key(image) == image_content_key(image.convert("RGBA"))
    assert image_content_key(image) != image_content_key(reference_image(1))


@pytest.mark.parametrize("which", ["sd", "sd_plus"])
def test_cached_embeddings_give_the_same_image_as_the_image_path(which, request, tmp_path):
    generator = request.getfixturevalue(which)
    refs = [reference_image(i) for i in range(3)]
    encoder = CountingEncoder(generator)
    cache = ReferenceEmbeddingCache(tmp_path)

    cold = cache.embeddings_for(encoder, refs)
    warm = ReferenceEmbeddingCache(tmp_path).embeddings_for(encoder, refs)  # a fresh process, same disk
    assert encoder.encoded == 3  # the second lookup never touched the image encoder
    assert torch.equal(cold, warm)

    from_images = generator.generate(make_inputs(references=refs))[0]
    from_cache = generator.generate(make_inputs(reference_embeds=warm))[0]
    assert np.array_equal(pixels(from_images), pixels(from_cache))


def test_order_and_partial_hits(sd, tmp_path):
    refs = [reference_image(i) for i in range(3)]
    encoder = CountingEncoder(sd)
    cache = ReferenceEmbeddingCache(tmp_path)
    cache.embeddings_for(encoder, refs[:2])
    reordered = cache.embeddings_for(encoder, [refs[2], refs[0]])
    assert encoder.encoded == 3 and (cache.hits, cache.misses) == (1, 3)
    direct = sd.encode_references([refs[2], refs[0]])
    assert torch.allclose(reordered, direct, atol=1e-5)


def test_entries_are_separated_by_encoder_output(sd, sd_plus, tmp_path):
    cache = ReferenceEmbeddingCache(tmp_path)
    ref = [reference_image(0)]
    base = cache.embeddings_for(sd, ref)
    plus = cache.embeddings_for(sd_plus, ref)
    assert base.shape != plus.shape  # image_embeds vs hidden_states[-2]
    assert cache.misses == 2


def test_caller_supplied_content_keys(sd, tmp_path):
    cache = ReferenceEmbeddingCache(tmp_path)
    cache.embeddings_for(sd, [reference_image(0)], content_keys=["sha-of-the-corpus-png"])
    stored = cache.get(sd.image_encoder_id, "sha-of-the-corpus-png")
    assert stored is not None and stored.shape[:2] == (2, 1)
    with pytest.raises(ValueError, match="invalid content key"):
        cache.embeddings_for(sd, [reference_image(0)], content_keys=["../escape"])


def test_flux_embeddings_round_trip_through_the_cache(tmp_path):
    generator = flux.load(packaged_spec("tiny-flux"), "cpu")
    refs = [reference_image(4), reference_image(5)]
    embeds = ReferenceEmbeddingCache(tmp_path).embeddings_for(generator, refs)
    from_images = generator.generate(make_inputs(references=refs))[0]
    from_cache = generator.generate(make_inputs(reference_embeds=embeds))[0]
    assert np.array_equal(pixels(from_images), pixels(from_cache))


def test_generators_without_an_encoder_are_refused(tmp_path):
    from generator_service.families import omnigen

    generator = omnigen.load(packaged_spec("tiny-omnigen"), "cpu")
    with pytest.raises(ValueError, match="no image encoder"):
        ReferenceEmbeddingCache(tmp_path).embeddings_for(generator, [reference_image(0)])
