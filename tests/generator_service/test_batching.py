"""Micro-batching groups only requests that share everything but seeds (huggingface/diffusers#9813)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from generator_service.batching import BatchRequest, group_requests, run_batched
from generator_service.families import stable_diffusion
from generator_service.families.base import JobCanceled

from .families.helpers import (
    assert_equal_up_to_batch_rounding,
    make_inputs,
    packaged_spec,
    pixels,
    reference_image,
)


@pytest.fixture(scope="module")
def generator():
    return stable_diffusion.load(packaged_spec("tiny-sd"), "cpu")


def _request(seeds, refs, **overrides):
    return BatchRequest(model="tiny-sd", inputs=make_inputs(seeds=seeds, references=refs, **overrides))


def test_batched_output_equals_separate_calls(generator):
    refs = [reference_image(0), reference_image(1)]
    requests = [_request([1], refs), _request([2, 3], refs), _request([4], refs)]
    assert group_requests(requests) == [[0, 1, 2]]

    calls = []
    original = generator.generate

    def counting_generate(inputs):
        calls.append(list(inputs.seeds))
        return original(inputs)

    generator.generate = counting_generate
    try:
        batched = run_batched(generator, requests)
    finally:
        del generator.generate
    assert calls == [[1, 2, 3, 4]]  # one pipeline call for the whole group

    for request, images in zip(requests, batched):
        separate = generator.generate(request.inputs)
        assert len(images) == len(separate) == len(request.inputs.seeds)
        for a, b in zip(images, separate):
            assert_equal_up_to_batch_rounding(a, b)
    # and the seeds really are per image
    assert np.abs(pixels(batched[0][0]) - pixels(batched[1][0])).max() > 10


def test_requests_with_different_references_are_never_grouped():
    a = _request([1], [reference_image(0)])
    b = _request([2], [reference_image(1)])
    same_as_a = _request([3], [reference_image(0).copy()])  # same pixels, another object
    more_refs = _request([4], [reference_image(0), reference_image(1)])
    labeled = _request([5], [reference_image(0)], reference_labels=["fox"])
    assert group_requests([a, b, same_as_a, more_refs, labeled]) == [[0, 2], [1], [3], [4]]


def test_requests_differing_in_any_call_parameter_are_not_grouped():
    refs = [reference_image(0)]
    base = _request([1], refs)
    variants = [
        _request([2], refs, prompt="another prompt"),
        _request([2], refs, ip_scale=0.3),
        _request([2], refs, guidance=2.0),
        _request([2], refs, steps=5),
        _request([2], refs, width=96),
        _request([2], refs, negative_prompt="blurry"),
        BatchRequest(model="tiny-sdxl", inputs=base.inputs),
    ]
    for variant in variants:
        assert len(group_requests([base, variant])) == 2


def test_embedding_requests_group_by_content(generator):
    embeds = generator.encode_references([reference_image(0)])
    a = BatchRequest("tiny-sd", make_inputs(seeds=[1], reference_embeds=embeds))
    b = BatchRequest("tiny-sd", make_inputs(seeds=[2], reference_embeds=embeds.clone()))
    c = BatchRequest("tiny-sd", make_inputs(seeds=[3], reference_embeds=embeds + 1))
    assert group_requests([a, b, c]) == [[0, 1], [2]]


def test_group_size_is_capped_by_images():
    refs = [reference_image(0)]
    requests = [_request([i, i + 100], refs) for i in range(5)]
    assert group_requests(requests, max_images=4) == [[0, 1], [2, 3], [4]]


def test_a_canceled_member_is_dropped_and_the_others_finish(generator):
    refs = [reference_image(0)]

    def cancel(done, total):
        raise JobCanceled("user canceled")

    progress = []
    keep = _request([1], refs, on_step=lambda done, total: progress.append(done))
    drop = _request([2], refs, on_step=cancel)
    kept, dropped = run_batched(generator, [keep, drop])
    assert isinstance(dropped, JobCanceled)
    assert len(kept) == 1
    assert_equal_up_to_batch_rounding(kept[0], generator.generate(replace(keep.inputs, on_step=None))[0])
    assert progress == [1, 2, 3]


def test_all_members_canceled_aborts_the_call(generator):
    def cancel(done, total):
        raise JobCanceled("user canceled")

    results = run_batched(generator, [_request([1], [], on_step=cancel), _request([2], [], on_step=cancel)])
    assert all(isinstance(result, JobCanceled) for result in results)


def test_diffusers_batch_with_per_prompt_references_mixes_them(generator):
    """Documents #9813, the reason for the grouping rule: a raw batched call with one reference per
    prompt conditions every image on all the references, so it differs from separate calls."""
    pipe = generator.pipe
    pipe.set_ip_adapter_scale(0.6)
    ref_a, ref_b = reference_image(0), reference_image(1)

    def call(prompts, refs, seeds):
        return pipe(
            prompt=prompts,
            ip_adapter_image=[refs],
            num_inference_steps=3,
            guidance_scale=5.0,
            height=64,
            width=64,
            generator=[torch.Generator().manual_seed(s) for s in seeds],
        ).images

    batched = call(["a fox", "a fox"], [ref_a, ref_b], [1, 2])
    separate_a = call(["a fox"], [ref_a], [1])[0]
    assert not np.array_equal(pixels(batched[0]), pixels(separate_a))
