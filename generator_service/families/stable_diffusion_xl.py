"""Stable Diffusion XL with an h94 IP-Adapter: plain (ViT-bigG or ViT-H) or Plus (ViT-H).

SDXL uses the same ``IPAdapterMixin`` as SD 1.5, so conditioning, embeddings, cancel and seeding are
the SD generator's (``stable_diffusion.StableDiffusionGenerator``); this module owns what differs:
the two text encoders, the added time conditioning and the weights/encoder pairing.

Encoders: ``ip-adapter_sdxl`` reads OpenCLIP ViT-bigG (``sdxl_models/image_encoder``); the
``*_vit-h`` files, including the recommended ``ip-adapter-plus_sdxl_vit-h`` (scale 0.5), need the
ViT-H encoder (``models/image_encoder``), which is loaded from ``spec.image_encoder`` and passed to
the pipeline so that ``load_ip_adapter`` does not look for it next to the adapter.

``source = "tiny"`` builds the tiny twin (``generator_service.tiny.stable_diffusion_xl``).
"""

from __future__ import annotations

from diffusers import AutoencoderKL, StableDiffusionXLPipeline
from transformers import CLIPVisionModelWithProjection

from generator_service.families.common import auto_device, load_kwargs, match_dtype, place_pipeline
from generator_service.families.stable_diffusion import StableDiffusionGenerator
from services.registry import ModelSpec

FAMILY = "sdxl"


def build_pipeline(spec: ModelSpec, device: str) -> StableDiffusionXLPipeline:
    """SDXL weights (HF id or local dir) + the IP-Adapter and image encoder named by the spec.

    ``spec.options``: ``variant`` (e.g. "fp16" weight files), ``vae`` (e.g.
    "madebyollin/sdxl-vae-fp16-fix", which avoids the fp32 upcast of the stock VAE in fp16),
    ``load_image_encoder`` (False for an embeddings-only worker).
    """
    kwargs = load_kwargs(spec, device)
    dtype = kwargs["dtype"]
    extra = {}
    load_encoder = spec.options.get("load_image_encoder", True)
    if spec.image_encoder and load_encoder:
        extra["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
    if spec.options.get("vae"):
        extra["vae"] = AutoencoderKL.from_pretrained(spec.options["vae"], dtype=dtype, low_cpu_mem_usage=True)
    if spec.options.get("variant"):
        extra["variant"] = spec.options["variant"]
    pipe = StableDiffusionXLPipeline.from_pretrained(spec.source, add_watermarker=False, **kwargs, **extra)
    if not spec.adapter:
        raise ValueError(f"model {spec.key!r}: an IP-Adapter (`adapter`) is required for reference conditioning")
    pipe.load_ip_adapter(
        spec.adapter,
        subfolder=spec.adapter_subfolder or "sdxl_models",
        weight_name=spec.adapter_weight_name or "ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="image_encoder" if load_encoder and not spec.image_encoder else None,
    )
    match_dtype(pipe, dtype)
    return pipe


def load(spec: ModelSpec, device: str | None = None) -> StableDiffusionGenerator:
    device = auto_device(device)
    if spec.source == "tiny":
        from generator_service.tiny import stable_diffusion_xl as tiny

        pipe = tiny.build_pipeline(spec.adapter_variant)
    else:
        pipe = build_pipeline(spec, device)
    place_pipeline(pipe, spec.offload, device)
    return StableDiffusionGenerator(spec, pipe, device)
