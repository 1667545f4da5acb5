"""Micro-batching of generation requests that are safe to run as one pipeline call.

diffusers' SD/SDXL pipelines tile the IP-Adapter embeddings across the batch
(``prepare_ip_adapter_image_embeds(..., batch_size * num_images_per_prompt)``, huggingface/diffusers#9813),
so prompts with *different* references in one call get their references silently mixed. The rule here:
requests are grouped only when everything but their seeds is identical (model, prompt, negative prompt,
steps, guidance, size, adapter scale, the references' pixels or embeddings, their labels). A group runs
as ONE ``generate`` call whose seed list is the members' seeds concatenated, so every image still has
its own ``torch.Generator`` and equals the image a separate call would give.

Cancellation: the group's step callback forwards progress to every member. A member whose ``on_step``
raises ``JobCanceled`` is dropped from the results (its images are discarded); the call is aborted
only when every member has canceled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from generator_service.families.base import GenerationInputs, Generator, JobCanceled
from generator_service.reference_cache import image_content_key


@dataclass
class BatchRequest:
    model: str
    inputs: GenerationInputs
    # content keys of inputs.references when the caller already has them (e.g. the retriever's hashes)
    reference_keys: Sequence[str] | None = None


def _embeds_key(embeds) -> str | None:
    if embeds is None:
        return None
    tensors = embeds if isinstance(embeds, (list, tuple)) else [embeds]
    digest = hashlib.sha256()
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"reference_embeds must be tensors, got {type(tensor).__name__}")
        flat = tensor.detach().to("cpu").contiguous()
        digest.update(f"{flat.dtype}:{tuple(flat.shape)}:".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def batch_key(request: BatchRequest) -> Hashable:
    """Everything that must be equal for two requests to share one pipeline call (all but seeds)."""
    inputs = request.inputs
    if request.reference_keys is not None:
        if len(request.reference_keys) != len(inputs.references):
            raise ValueError("reference_keys must have one key per reference")
        references = tuple(request.reference_keys)
    else:
        references = tuple(image_content_key(image) for image in inputs.references)
    return (
        request.model,
        inputs.prompt,
        inputs.negative_prompt,
        inputs.steps,
        float(inputs.guidance),
        inputs.width,
        inputs.height,
        float(inputs.ip_scale),
        references,
        tuple(inputs.reference_labels),
        _embeds_key(inputs.reference_embeds),
    )


def group_requests(requests: Sequence[BatchRequest], max_images: int = 8) -> list[list[int]]:
    """Indices of ``requests`` grouped by ``batch_key``, in arrival order, at most ``max_images`` seeds a group.

    A request with more seeds than ``max_images`` forms a group of its own (it is never split).
    """
    if max_images < 1:
        raise ValueError("max_images must be >= 1")
    groups: list[list[int]] = []
    open_group: dict[Hashable, int] = {}  # key -> index in groups of the group still accepting members
    sizes: list[int] = []
    for index, request in enumerate(requests):
        key = batch_key(request)
        seeds = len(request.inputs.seeds)
        slot = open_group.get(key)
        if slot is not None and sizes[slot] + seeds <= max_images:
            groups[slot].append(index)
            sizes[slot] += seeds
            continue
        open_group[key] = len(groups)
        groups.append([index])
        sizes.append(seeds)
    return groups


def run_group(generator: Generator, requests: Sequence[BatchRequest]) -> list[list[Image.Image] | JobCanceled]:
    """Run requests that share one ``batch_key`` as one ``generate`` call; one result per request.

    A result is the request's images (one per seed) or the ``JobCanceled`` its callback raised.
    """
    if not requests:
        return []
    keys = {batch_key(request) for request in requests}
    if len(keys) != 1:
        raise ValueError("run_group needs requests that differ only in their seeds (see group_requests)")

    canceled: dict[int, JobCanceled] = {}

    def on_step(done: int, total: int) -> None:
        for index, request in enumerate(requests):
            if index in canceled or request.inputs.on_step is None:
                continue
            try:
                request.inputs.on_step(done, total)
            except JobCanceled as exc:
                canceled[index] = exc
        if len(canceled) == len(requests):
            raise JobCanceled("every request in the batch was canceled")

    first = requests[0].inputs
    seeds = [seed for request in requests for seed in request.inputs.seeds]
    try:
        images = generator.generate(replace(first, seeds=seeds, on_step=on_step))
    except JobCanceled:
        if len(canceled) == len(requests):
            return [canceled[index] for index in range(len(requests))]
        raise

    results: list[list[Image.Image] | JobCanceled] = []
    start = 0
    for index, request in enumerate(requests):
        count = len(request.inputs.seeds)
        results.append(canceled[index] if index in canceled else images[start : start + count])
        start += count
    return results


def run_batched(
    generator: Generator, requests: Sequence[BatchRequest], max_images: int = 8
) -> list[list[Image.Image] | JobCanceled]:
    """Group, run one call per group, and return one result per request in the original order."""
    for request in requests:
        if request.model != generator.key:
            raise ValueError(f"request for model {request.model!r} sent to generator {generator.key!r}")
    results: list[list[Image.Image] | JobCanceled | None] = [None] * len(requests)
    for group in group_requests(requests, max_images):
        for index, result in zip(group, run_group(generator, [requests[i] for i in group])):
            results[index] = result
    return results  # type: ignore[return-value]
