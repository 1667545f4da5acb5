"""Stable Diffusion 1.5 / 2.1 with an h94-style IP-Adapter (base or Plus).

The k retrieved references go into ONE pipeline call as ``ip_adapter_image=[[r1, ..., rk]]``: the
adapter concatenates 4 (base) or 16 (Plus) projected tokens per reference in its cross-attention.

``source`` is an HF id or a local directory with real weights; ``"tiny"`` builds the tiny twin
(``generator_service.tiny.stable_diffusion``: the same classes with tiny random weights and a random
adapter, loaded through the public ``load_ip_adapter(state_dict)``).

Reference embeddings (``encode_references``) are one tensor of shape ``(2, k, *per_image)``, the
negative half first, exactly what ``pipe.prepare_ip_adapter_image_embeds`` produces under CFG; the
reference axis is 1, so per-reference slices can be cached and concatenated.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.embeddings import ImageProjection
from PIL import Image
from transformers import CLIPVisionModelWithProjection

from generator_service.families.base import GenerationInputs
from generator_service.families.common import auto_device, load_kwargs, match_dtype, place_pipeline, step_callback
from services.registry import ModelSpec

FAMILY = "sd"


def build_pipeline(spec: ModelSpec, device: str) -> StableDiffusionPipeline:
    """SD 1.5 / 2.1 weights (HF id or local dir) + the IP-Adapter named by the spec."""
    kwargs = load_kwargs(spec, device)
    dtype = kwargs["dtype"]
    extra = {}
    load_encoder = spec.options.get("load_image_encoder", True)
    if spec.image_encoder and load_encoder:
        extra["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        spec.source, safety_checker=None, requires_safety_checker=False, **kwargs, **extra
    )
    if not spec.adapter:
        if spec.max_references:
            raise ValueError(f"model {spec.key!r}: max_references > 0 needs an IP-Adapter (`adapter`)")
        return pipe  # text-to-image only (e.g. SD 2.1, for which h94 has no adapter)
    pipe.load_ip_adapter(
        spec.adapter,
        subfolder=spec.adapter_subfolder or "",
        weight_name=spec.adapter_weight_name or "ip-adapter_sd15.safetensors",
        # an encoder passed above is already registered; None = embeddings-only worker
        image_encoder_folder="image_encoder" if load_encoder and not spec.image_encoder else None,
    )
    match_dtype(pipe, dtype)
    return pipe


def encoder_id(spec: ModelSpec, variant: str) -> str:
    """Identifies the embedding space: the encoder weights and which of its outputs the adapter reads."""
    output = "hidden_states[-2]" if variant == "plus" else "image_embeds"
    if spec.source == "tiny":
        return f"tiny-{spec.family}/clip-vision#{output}"
    encoder = spec.image_encoder or spec.adapter
    subfolder = spec.image_encoder_subfolder or f"{spec.adapter_subfolder or ''}/image_encoder".lstrip("/")
    return f"{encoder}/{subfolder}#{output}"


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class StableDiffusionGenerator:
    """Any ``IPAdapterMixin`` pipeline of the SD lineage (SD 1.5/2.1 here, SDXL reuses it)."""

    def __init__(self, spec: ModelSpec, pipe: StableDiffusionPipeline, device: str):
        self.key = spec.key
        self.family = spec.family
        self.spec = spec
        self.pipe = pipe
        self.device = device
        self.max_references = spec.max_references
        self.variant = spec.adapter_variant
        self.has_adapter = getattr(pipe.unet, "encoder_hid_proj", None) is not None
        self.image_encoder_id = encoder_id(spec, self.variant) if self.has_adapter else None
        self.size_multiple = max(spec.size_multiple, 8)
        self.pipe.set_progress_bar_config(disable=True)

    # -- validation -----------------------------------------------------------------------

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
                f"model {self.key!r} accepts at most {self.max_references} reference images, got {count}"
            )

    # -- reference embeddings -------------------------------------------------------------

    @torch.no_grad()
    def encode_references(self, images: list[Image.Image]) -> torch.Tensor:
        """Adapter embeddings of ``images``: ``(2, k, *per_image)``, negative half first, on CPU."""
        if not images:
            raise ValueError("encode_references needs at least one image")
        if not self.has_adapter:
            raise ValueError(f"model {self.key!r} has no IP-Adapter; it cannot use references")
        if self.pipe.image_encoder is None:
            raise ValueError(f"model {self.key!r} was loaded without an image encoder; pass embeddings")
        embeds = self.pipe.prepare_ip_adapter_image_embeds(
            ip_adapter_image=[list(images)],
            ip_adapter_image_embeds=None,
            device=self._execution_device(),
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
        return embeds[0].float().cpu()

    def _embeds_tensor(self, reference_embeds) -> torch.Tensor:
        embeds = reference_embeds[0] if isinstance(reference_embeds, (list, tuple)) else reference_embeds
        if not isinstance(embeds, torch.Tensor) or embeds.ndim < 3 or embeds.shape[0] != 2:
            raise ValueError("reference_embeds must be a (2, k, ...) tensor from encode_references")
        return embeds

    def _no_reference_embeds(self) -> torch.Tensor:
        # shape of one reference, all zeros; only used with the adapter scale at 0 (the IP branch is skipped)
        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        per_image: tuple[int, ...]
        if isinstance(projection, ImageProjection):
            per_image = (projection.image_embeds.in_features,)
        else:
            encoder_config = self.pipe.image_encoder.config if self.pipe.image_encoder is not None else None
            tokens = (encoder_config.image_size // encoder_config.patch_size) ** 2 + 1 if encoder_config else 257
            per_image = (tokens, projection.proj_in.in_features)
        return torch.zeros(2, 1, *per_image)

    # -- generation -----------------------------------------------------------------------

    def _execution_device(self) -> torch.device:
        return self.pipe._execution_device

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        do_cfg = inputs.guidance > 1.0
        conditioning: dict = {}
        if inputs.reference_embeds is not None:
            embeds, scale = self._embeds_tensor(inputs.reference_embeds), inputs.ip_scale
        elif inputs.references:
            embeds, scale = None, inputs.ip_scale
            conditioning["ip_adapter_image"] = [list(inputs.references)]
        elif self.has_adapter:
            embeds, scale = self._no_reference_embeds(), 0.0
        else:
            embeds, scale = None, None  # plain pipeline, no adapter loaded
        if embeds is not None:
            embeds = embeds.to(device=self._execution_device(), dtype=pipe.unet.dtype)
            conditioning["ip_adapter_image_embeds"] = [embeds if do_cfg else embeds[1:]]
        if scale is not None:
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
            callback_on_step_end=step_callback(inputs.on_step),
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> StableDiffusionGenerator:
    device = auto_device(device)
    if spec.source == "tiny":
        from generator_service.tiny import stable_diffusion as tiny

        pipe = tiny.build_pipeline(spec.adapter_variant)
    else:
        pipe = build_pipeline(spec, device)
    place_pipeline(pipe, spec.offload, device)
    return StableDiffusionGenerator(spec, pipe, device)
