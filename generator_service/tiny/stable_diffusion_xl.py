"""Tiny twin of SDXL: two tiny CLIP text encoders, the added time conditioning, a random adapter."""

from __future__ import annotations

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from generator_service.tiny import components
from generator_service.tiny.stable_diffusion import with_random_ip_adapter
from generator_service.tiny.tokenizers import clip_tokenizer

TEXT_HIDDEN = 16  # each of the two text encoders; the UNet reads their concatenation
CROSS_ATTENTION_DIM = 2 * TEXT_HIDDEN
POOLED_DIM = 16
TIME_EMBED_DIM = 8


def _text_config(projection_dim: int | None = None) -> CLIPTextConfig:
    return components.clip_text_config(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=32,
        num_attention_heads=2,
        hidden_act="gelu",
        projection_dim=projection_dim or TEXT_HIDDEN,
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
        addition_time_embed_dim=TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        # pooled text embedding + 6 micro-conditioning scalars (original size, crop, target size)
        projection_class_embeddings_input_dim=POOLED_DIM + 6 * TIME_EMBED_DIM,
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    vae = components.vae(sample_size=128)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config())
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(projection_dim=POOLED_DIM))
    image_encoder, feature_extractor = components.clip_vision(projection_dim=CROSS_ATTENTION_DIM)
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


def build_pipeline(variant: str) -> StableDiffusionXLPipeline:
    """The tiny SDXL pipeline with a random base or Plus IP-Adapter."""
    return with_random_ip_adapter(StableDiffusionXLPipeline(**tiny_components()), CROSS_ATTENTION_DIM, variant)
