"""Stable Diffusion 3 / 3.5 with InstantX's SD3.5-Large IP-Adapter (SigLIP so400m encoder).

The adapter reads SigLIP ``hidden_states[-2]`` (729x1152 per image) through a timestep-aware
resampler (``IPAdapterTimeImageProjection``). diffusers supports **one adapter and one reference
image per call**, so ``max_references`` is 1: more references are rejected, never silently dropped.

Reference embeddings (``encode_references``) use the shared layout ``(2, k, tokens, dim)``, the
negative half (zeros, as the pipeline builds it) first; generation takes the single reference slot.

``source = "tiny"`` builds the tiny twin (``generator_service.tiny.stable_diffusion_3``: the real
classes with tiny random weights and a random adapter).
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusion3Pipeline
from PIL import Image
from transformers import SiglipImageProcessor, SiglipVisionModel

from generator_service.families.base import GenerationInputs
from generator_service.families.common import auto_device, load_kwargs, match_dtype, place_pipeline, step_callback
from services.registry import ModelSpec

FAMILY = "sd3"
DEFAULT_MAX_SEQUENCE_LENGTH = 256  # T5 tokens of the prompt (diffusers' default)


def build_pipeline(spec: ModelSpec, device: str) -> StableDiffusion3Pipeline:
    """SD3.5 weights + SigLIP so400m + InstantX IP-Adapter, per the diffusers docs.

    ``spec.image_encoder`` is the SigLIP repo (``google/siglip-so400m-patch14-384``). The main branch
    of InstantX/SD3.5-Large-IP-Adapter holds ``ip-adapter.bin`` in InstantX's key names, which diffusers
    renames at load (an ``ip-adapter_diffusers.safetensors`` exists only in an unmerged PR branch).
    """
    kwargs = load_kwargs(spec, device)
    dtype = kwargs["dtype"]
    extra = {}
    if spec.image_encoder and spec.options.get("load_image_encoder", True):
        extra["image_encoder"] = SiglipVisionModel.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
        extra["feature_extractor"] = SiglipImageProcessor.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or ""
        )
    pipe = StableDiffusion3Pipeline.from_pretrained(spec.source, **kwargs, **extra)
    if not spec.adapter:
        raise ValueError(f"model {spec.key!r}: an IP-Adapter (`adapter`) is required for reference conditioning")
    pipe.load_ip_adapter(
        spec.adapter,
        weight_name=spec.adapter_weight_name or "ip-adapter.bin",
        subfolder=spec.adapter_subfolder,
        image_encoder_folder=None if extra or not spec.options.get("load_image_encoder", True) else "image_encoder",
    )
    match_dtype(pipe, dtype)
    return pipe


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class StableDiffusion3Generator:
    family = FAMILY

    def __init__(
        self,
        spec: ModelSpec,
        pipe: StableDiffusion3Pipeline,
        device: str,
        max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    ):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.device = device
        if spec.max_references > 1:
            raise ValueError(f"model {spec.key!r}: SD3 IP-Adapter takes one reference; set max_references = 1")
        self.max_references = spec.max_references
        if spec.source == "tiny":
            self.image_encoder_id = "tiny-sd3/siglip#hidden_states[-2]"
        else:
            self.image_encoder_id = f"{spec.image_encoder or f'{spec.adapter}/image_encoder'}#hidden_states[-2]"
        self.size_multiple = max(spec.size_multiple, pipe.vae_scale_factor * pipe.patch_size)
        self.max_sequence_length = int(spec.options.get("max_sequence_length", max_sequence_length))
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
        count = len(inputs.references)
        if inputs.reference_embeds is not None:
            count = self._embeds_tensor(inputs.reference_embeds).shape[1]
        if count > self.max_references:
            raise ValueError(
                f"model {self.key!r} accepts at most {self.max_references} reference image"
                f"{'s' if self.max_references != 1 else ''}, got {count}"
            )

    @torch.no_grad()
    def encode_references(self, images: list[Image.Image]) -> torch.Tensor:
        """SigLIP ``hidden_states[-2]`` per image: ``(2, k, tokens, dim)``, zeros (negative) first."""
        if not images:
            raise ValueError("encode_references needs at least one image")
        if self.pipe.image_encoder is None:
            raise ValueError(f"model {self.key!r} was loaded without an image encoder; pass embeddings")
        positive = self.pipe.encode_image(list(images), self.pipe._execution_device)
        return torch.stack([torch.zeros_like(positive), positive]).float().cpu()

    def _embeds_tensor(self, reference_embeds) -> torch.Tensor:
        if not isinstance(reference_embeds, torch.Tensor) or reference_embeds.ndim != 4 or reference_embeds.shape[0] != 2:
            raise ValueError("reference_embeds must be a (2, k, tokens, dim) tensor from encode_references")
        return reference_embeds

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        do_cfg = inputs.guidance > 1.0
        conditioning: dict = {}
        if inputs.reference_embeds is not None:
            embeds = self._embeds_tensor(inputs.reference_embeds)[:, 0]
            embeds = embeds.to(device=pipe._execution_device, dtype=pipe.transformer.dtype)
            conditioning["ip_adapter_image_embeds"] = embeds if do_cfg else embeds[1:]
            scale = inputs.ip_scale
        elif inputs.references:
            conditioning["ip_adapter_image"] = inputs.references[0]
            scale = inputs.ip_scale
        else:
            scale = 0.0  # no image: the processors run their plain joint attention
        pipe.set_ip_adapter_scale(scale)

        result = pipe(
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt,
            height=inputs.height,
            width=inputs.width,
            num_inference_steps=inputs.steps,
            guidance_scale=inputs.guidance,
            num_images_per_prompt=len(inputs.seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
            max_sequence_length=self.max_sequence_length,
            callback_on_step_end=step_callback(inputs.on_step),
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> StableDiffusion3Generator:
    device = auto_device(device)
    max_sequence_length = DEFAULT_MAX_SEQUENCE_LENGTH
    if spec.source == "tiny":
        from generator_service.tiny import stable_diffusion_3 as tiny

        pipe = tiny.build_pipeline()
        max_sequence_length = tiny.MAX_SEQUENCE_LENGTH
    else:
        pipe = build_pipeline(spec, device)
    place_pipeline(pipe, spec.offload, device)
    return StableDiffusion3Generator(spec, pipe, device, max_sequence_length)
