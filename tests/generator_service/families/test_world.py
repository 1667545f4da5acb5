"""world-sd through the generator protocol (tiny random twin; the trained model is exercised by the
novel-objects benchmark and the world training tests)."""

import numpy as np
import pytest

from generator_service.families import FAMILY_MODULES, world
from generator_service.families.base import GenerationInputs
from services.registry import ModelSpec, get_spec
from tests.generator_service.families.helpers import (
    assert_equal_up_to_batch_rounding,
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

SIZE = dict(width=32, height=32)


@pytest.fixture(scope="module")
def generator():
    return world.load(packaged_spec("tiny-world"), "cpu")


def test_contract(generator):
    assert generator.family == "world" and generator.max_references == 1
    check_reproducible(generator, [reference_image(0)], seeds=[3, 4], **SIZE)
    check_reference_changes_image(generator, [reference_image(0)], [reference_image(1)], **SIZE)
    check_cancel_aborts_without_image(generator, [reference_image(0)], **SIZE)
    check_too_many_references_rejected(generator)
    check_sizes_honoured(generator, [(32, 32), (96, 96)])


def test_no_reference_works_and_differs(generator):
    without = generator.generate(make_inputs(references=[], **SIZE))[0]
    with_ref = generator.generate(make_inputs(references=[reference_image(0)], **SIZE))[0]
    assert np.abs(pixels(without) - pixels(with_ref)).max() > 2


def test_each_seed_is_independent_of_the_batch(generator):
    batch = generator.generate(make_inputs(seeds=[1, 2, 3], **SIZE))
    alone = generator.generate(make_inputs(seeds=[2], **SIZE))[0]
    assert len(batch) == 3
    assert_equal_up_to_batch_rounding(batch[1], alone)


def test_sizes_that_are_not_multiples_of_the_native_size_are_refused(generator):
    with pytest.raises(ValueError, match="renders 32x32"):
        generator.generate(make_inputs(width=48, height=48))
    with pytest.raises(ValueError, match="renders 32x32"):
        generator.generate(make_inputs(width=64, height=32))


def test_registered_world_sd_points_at_the_assets_and_bad_sources_fail_clearly():
    spec = get_spec("world-sd")
    assert spec.family == "world" and FAMILY_MODULES[spec.family] == "generator_service.families.world"
    bad = ModelSpec(key="x", family="world", source="no/such/world-sd")
    with pytest.raises(FileNotFoundError, match="no/such/world-sd"):
        world.load(bad, "cpu")


def test_saved_pipeline_reloads_identically(generator, tmp_path):
    # the tiny twin's text encoder is the seeded random world CLIP, rebuilt the same way on reload
    generator.pipeline.save(tmp_path / "w")
    again = world.load(ModelSpec(key="w", family="world", source=str(tmp_path / "w")), "cpu")
    a = generator.generate(make_inputs(references=[reference_image(2)], **SIZE))[0]
    b = again.generate(GenerationInputs(prompt="a photo of a red fox", seeds=[7], steps=3, guidance=5.0,
                                        references=[reference_image(2)], **SIZE))[0]
    assert np.abs(pixels(a) - pixels(b)).max() <= 2  # weights are stored in fp16
