"""Tiny random components several twins share: VAE, CLIP / SigLIP vision towers, CLIP text, T5.

Every builder seeds the global RNG with 0 first, so a component's weights do not depend on what was
built before it: every process builds identical tiny models.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
)

from generator_service.tiny.tokenizers import BYTE_EOS_ID, BYTE_PAD_ID, BYTE_VOCAB_SIZE, CLIP_BOS_ID, CLIP_EOS_ID, CLIP_VOCAB_SIZE

VISION_HIDDEN = 32
VISION_IMAGE_SIZE = 32

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def to_eval_mode(pipe: Any) -> None:
    # modules built from configs start in training mode (T5 dropout would make outputs random)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def vae(sample_size: int = 64, **overrides: Any) -> AutoencoderKL:
    """A four-level VAE, so that latents are 1/8 of the image size as in the real models."""
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[4, 8, 8, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=sample_size,
        **overrides,
    )


def flow_vae() -> AutoencoderKL:
    """The SD3 / Flux flavour: no quant convs, a shift and a scale of the latents."""
    return vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def clip_text_config(hidden_size: int, intermediate_size: int, num_attention_heads: int, **extra: Any) -> CLIPTextConfig:
    """Two layers over the real CLIP vocabulary (49,408 ids), so the real CLIP tokenizer fits."""
    return CLIPTextConfig(
        bos_token_id=CLIP_BOS_ID,
        eos_token_id=CLIP_EOS_ID,
        pad_token_id=CLIP_EOS_ID,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        layer_norm_eps=1e-05,
        num_attention_heads=num_attention_heads,
        num_hidden_layers=2,
        vocab_size=CLIP_VOCAB_SIZE,
        max_position_embeddings=77,
        **extra,
    )


def clip_vision(projection_dim: int) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """A CLIP vision tower with projection (``image_embeds``; ``hidden_states`` for Plus adapters)."""
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=VISION_HIDDEN,
            image_size=VISION_IMAGE_SIZE,
            patch_size=8,
            projection_dim=projection_dim,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    processor = CLIPImageProcessor(
        crop_size=VISION_IMAGE_SIZE,
        size=VISION_IMAGE_SIZE,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    return encoder, processor


def siglip_vision() -> tuple[SiglipVisionModel, SiglipImageProcessor]:
    """A SigLIP vision tower (SD3's adapter encoder, Flux Redux's encoder)."""
    torch.manual_seed(0)
    encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=VISION_HIDDEN,
            image_size=VISION_IMAGE_SIZE,
            patch_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    processor = SiglipImageProcessor(size={"height": VISION_IMAGE_SIZE, "width": VISION_IMAGE_SIZE})
    return encoder, processor


def t5_encoder(width: int) -> T5EncoderModel:
    """A T5 encoder over the byte-level vocabulary (``tokenizers.byte_level_tokenizer``)."""
    torch.manual_seed(0)
    return T5EncoderModel(
        T5Config(
            vocab_size=BYTE_VOCAB_SIZE,
            d_model=width,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=BYTE_PAD_ID,
            eos_token_id=BYTE_EOS_ID,
            decoder_start_token_id=BYTE_PAD_ID,
        )
    )
