"""Stable Diffusion XL with an h94 IP-Adapter: plain (ViT-bigG or ViT-H) or Plus (ViT-H).

SDXL uses the same ``IPAdapterMixin`` as SD 1.5, so conditioning, embeddings, cancel and seeding are
the SD generator's (``stable_diffusion.StableDiffusionGenerator``); this module owns what differs:
the two text encoders, the added time conditioning and the weights/encoder pairing.

Encoders: ``ip-adapter_sdxl`` reads OpenCLIP ViT-bigG (``sdxl_models/image_encoder``); the
``*_vit-h`` files, including the recommended ``ip-adapter-plus_sdxl_vit-h`` (scale 0.5), need the
ViT-H encoder (``models/image_encoder``), which is loaded from ``spec.image_encoder`` and passed to
the pipeline so that ``load_ip_adapter`` does not look for it next to the adapter.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from generator_service.families.stable_diffusion import (
    DTYPES,
    TINY_VISION_HIDDEN,
    StableDiffusionGenerator,
    random_ip_adapter_state_dict,
    resolve_device,
    tiny_image_encoder,
    to_eval_mode,
)
from generator_service.tiny.tokenizers import CLIP_BOS_ID, CLIP_EOS_ID, CLIP_VOCAB_SIZE, clip_tokenizer
from services.registry import ModelSpec

FAMILY = "sdxl"

TINY_TEXT_HIDDEN = 16  # each of the two text encoders; the UNet reads their concatenation
TINY_CROSS_ATTENTION_DIM = 2 * TINY_TEXT_HIDDEN
TINY_POOLED_DIM = 16
TINY_TIME_EMBED_DIM = 8


def _tiny_text_config(projection_dim: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=CLIP_EOS_ID,
        hidden_size=TINY_TEXT_HIDDEN,
        intermediate_size=32,
        layer_norm_eps=1e-05,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=CLIP_VOCAB_SIZE,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=projection_dim or TINY_TEXT_HIDDEN,
    )


def tiny_components() -> dict:
    """Tiny SDXL components (diffusers' SDXL ``get_dummy_components``, narrower), 1/8 latents."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        # pooled text embedding + 6 micro-conditioning scalars (original size, crop, target size)
        projection_class_embeddings_input_dim=TINY_POOLED_DIM + 6 * TINY_TIME_EMBED_DIM,
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
        norm_num_groups=2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8, 8, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=128,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_text_config())
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config(projection_dim=TINY_POOLED_DIM))
    image_encoder, feature_extractor = tiny_image_encoder(projection_dim=TINY_CROSS_ATTENTION_DIM)
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": clip_tokenizer(),
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
        "add_watermarker": False,
    }


def build_tiny_pipeline(variant: str) -> StableDiffusionXLPipeline:
    pipe = StableDiffusionXLPipeline(**tiny_components())
    image_embed_dim = TINY_VISION_HIDDEN if variant == "plus" else TINY_CROSS_ATTENTION_DIM
    state_dict = random_ip_adapter_state_dict(pipe.unet, image_embed_dim, variant)
    pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", low_cpu_mem_usage=False)
    to_eval_mode(pipe)
    return pipe


def build_pipeline(spec: ModelSpec) -> StableDiffusionXLPipeline:
    """SDXL weights (HF id or local dir) + the IP-Adapter and image encoder named by the spec.

    ``spec.options``: ``variant`` (e.g. "fp16" weight files), ``vae`` (e.g.
    "madebyollin/sdxl-vae-fp16-fix", which avoids the fp32 upcast of the stock VAE in fp16),
    ``load_image_encoder`` (False for an embeddings-only worker).
    """
    dtype = DTYPES[spec.dtype]
    extra = {}
    load_encoder = spec.options.get("load_image_encoder", True)
    if spec.image_encoder and load_encoder:
        extra["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
    if spec.options.get("vae"):
        extra["vae"] = AutoencoderKL.from_pretrained(spec.options["vae"], dtype=dtype)
    if spec.options.get("variant"):
        extra["variant"] = spec.options["variant"]
    pipe = StableDiffusionXLPipeline.from_pretrained(
        spec.source, dtype=dtype, revision=spec.revision, add_watermarker=False, **extra
    )
    if not spec.adapter:
        raise ValueError(f"model {spec.key!r}: an IP-Adapter (`adapter`) is required for reference conditioning")
    pipe.load_ip_adapter(
        spec.adapter,
        subfolder=spec.adapter_subfolder or "sdxl_models",
        weight_name=spec.adapter_weight_name or "ip-adapter-plus_sdxl_vit-h.safetensors",
        image_encoder_folder="image_encoder" if load_encoder and not spec.image_encoder else None,
    )
    return pipe


def load(spec: ModelSpec, device: str | None = None) -> StableDiffusionGenerator:
    device = resolve_device(device)
    if spec.source == "tiny":
        pipe = build_tiny_pipeline(spec.adapter_variant)
        pipe.to(device)
    else:
        pipe = build_pipeline(spec)
        if spec.offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif spec.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
    return StableDiffusionGenerator(spec, pipe, device)
