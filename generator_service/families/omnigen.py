"""OmniGen v1: references go into the prompt itself, no adapter and no image encoder.

Each reference becomes ``<img><|image_i|></img>`` in the instruction and is VAE-encoded into
(H/16)*(W/16) tokens of the same sequence (``input_images=[r1..rk]``). The prompt follows ImageRAG:
"According to these images of {label_1}: <img><|image_1|></img>, {label_2}: ..., generate {prompt}",
with the labels from ``inputs.reference_labels``.

* ``ip_scale`` has no OmniGen counterpart; 0 means "don't show the references" (plain text-to-image),
  any other value conditions on them. Reference strength is ``options.img_guidance_scale`` (1.6).
* ``options.max_input_image_size`` (512, the docs' advice for retrieved references) caps the tokens
  per reference: 512 -> 1,024 tokens; 1024 -> 4,096 and ~40 GB with two references.
* OmniGen's loop never checks ``_interrupt``, so cancel works only by raising from the step callback.
* OmniGen encodes the references with ``latent_dist.sample()`` on the global RNG; the call runs
  under a forked RNG seeded with 0 so outputs depend only on the per-image seeds.
* Needs torchvision (diffusers' ``OmniGenMultiModalProcessor``).
* There are no reference embeddings to cache (``image_encoder_id`` is None).
* ``source = "tiny"`` builds the tiny twin (``generator_service.tiny.omnigen``).
"""

from __future__ import annotations

import torch
from diffusers import OmniGenPipeline
from PIL import Image

from generator_service.families.base import GenerationInputs
from generator_service.families.common import auto_device, load_kwargs, match_dtype, place_pipeline, step_callback
from services.registry import ModelSpec

FAMILY = "omnigen"

DEFAULT_IMG_GUIDANCE = 1.6
DEFAULT_MAX_INPUT_IMAGE_SIZE = 512
REFERENCE_ENCODING_SEED = 0


def rag_prompt(prompt: str, labels: list[str | None]) -> str:
    """ImageRAG's OmniGen instruction for len(labels) references (placeholders numbered from 1)."""
    if not labels:
        return prompt
    parts = []
    for index, label in enumerate(labels, start=1):
        placeholder = f"<img><|image_{index}|></img>"
        parts.append(f"{label}: {placeholder}" if label else placeholder)
    return f"According to these images of {', '.join(parts)}, generate {prompt}"


def build_pipeline(spec: ModelSpec, device: str) -> OmniGenPipeline:
    """``Shitao/OmniGen-v1-diffusers`` (or a local copy)."""
    kwargs = load_kwargs(spec, device)
    pipe = OmniGenPipeline.from_pretrained(spec.source, **kwargs)
    match_dtype(pipe, kwargs["dtype"])  # the transformer's pos_embed buffer is built in fp32
    return pipe


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class _WithNegativePrompt:
    """OmniGenPipeline.__call__ has no ``negative_prompt``; its processor does. Forward one."""

    def __init__(self, processor, negative_prompt: str):
        self._processor = processor
        self._negative_prompt = negative_prompt

    def __call__(self, *args, **kwargs):
        return self._processor(*args, negative_prompt=self._negative_prompt, **kwargs)

    def __getattr__(self, name):
        return getattr(self._processor, name)


class OmniGenGenerator:
    family = FAMILY
    image_encoder_id = None  # references are VAE-encoded inside the call; nothing to cache

    def __init__(self, spec: ModelSpec, pipe: OmniGenPipeline, device: str):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.device = device
        self.max_references = spec.max_references
        self.img_guidance_scale = float(spec.options.get("img_guidance_scale", DEFAULT_IMG_GUIDANCE))
        self.max_input_image_size = int(spec.options.get("max_input_image_size", DEFAULT_MAX_INPUT_IMAGE_SIZE))
        self.size_multiple = max(spec.size_multiple, pipe.vae_scale_factor * 2)
        self.pipe.set_progress_bar_config(disable=True)

    def check_inputs(self, inputs: GenerationInputs) -> None:
        for name, value in (("width", inputs.width), ("height", inputs.height)):
            if value <= 0 or value % self.size_multiple:
                raise ValueError(
                    f"model {self.key!r}: {name}={value} must be a positive multiple of {self.size_multiple}"
                )
        if not inputs.seeds:
            raise ValueError(f"model {self.key!r}: at least one seed is required")
        if inputs.steps < 1:
            raise ValueError(f"model {self.key!r}: steps must be >= 1, got {inputs.steps}")
        if inputs.reference_embeds is not None:
            raise ValueError(f"model {self.key!r} (OmniGen) conditions on images, not precomputed embeddings")
        if len(inputs.references) > self.max_references:
            raise ValueError(
                f"model {self.key!r} accepts at most {self.max_references} reference images, "
                f"got {len(inputs.references)}"
            )
        if inputs.reference_labels and len(inputs.reference_labels) != len(inputs.references):
            raise ValueError(
                f"reference_labels has {len(inputs.reference_labels)} entries for {len(inputs.references)} references"
            )
        if "<|image_" in inputs.prompt:
            raise ValueError("the prompt may not contain OmniGen image placeholders (<|image_i|>)")

    def encode_references(self, images: list[Image.Image]):
        raise NotImplementedError("OmniGen has no image encoder; pass the reference images")

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        references = list(inputs.references) if inputs.ip_scale != 0 else []
        labels: list[str | None] = list(inputs.reference_labels) if inputs.reference_labels else [None] * len(references)
        prompt = rag_prompt(inputs.prompt, labels[: len(references)])

        processor = pipe.multimodal_processor
        if inputs.negative_prompt is not None:
            pipe.multimodal_processor = _WithNegativePrompt(processor, inputs.negative_prompt)
        devices = [pipe._execution_device] if pipe._execution_device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(REFERENCE_ENCODING_SEED)
                result = pipe(
                    prompt=prompt,
                    input_images=references or None,
                    height=inputs.height,
                    width=inputs.width,
                    num_inference_steps=inputs.steps,
                    guidance_scale=inputs.guidance,
                    img_guidance_scale=self.img_guidance_scale,
                    max_input_image_size=self.max_input_image_size,
                    num_images_per_prompt=len(inputs.seeds),
                    generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
                    callback_on_step_end=step_callback(inputs.on_step),
                    output_type="pil",
                )
        finally:
            pipe.multimodal_processor = processor
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> OmniGenGenerator:
    device = auto_device(device)
    if spec.source == "tiny":
        from generator_service.tiny import omnigen as tiny

        pipe = tiny.build_pipeline()
    else:
        pipe = build_pipeline(spec, device)
    place_pipeline(pipe, spec.offload, device)
    return OmniGenGenerator(spec, pipe, device)
