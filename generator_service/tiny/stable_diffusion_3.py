"""Tiny twin of SD3: two CLIP text encoders, a T5 encoder over a byte-level vocabulary, a SigLIP
vision tower and a random InstantX-layout IP-Adapter. ``random_ip_adapter_state_dict`` also builds
the real-size random adapter of ``benchmarks/gpu_generators.py``."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.embeddings import IPAdapterTimeImageProjection
from transformers import CLIPTextModelWithProjection

from generator_service.tiny import components
from generator_service.tiny.tokenizers import byte_level_tokenizer, clip_tokenizer

HEAD_DIM = 8
HEADS = 4
HIDDEN = HEAD_DIM * HEADS
CLIP_HIDDEN = 32  # two CLIP encoders -> 64 wide prompt embeds, padded to the T5 width
T5_WIDTH = 64
ADAPTER_HIDDEN = 32
ADAPTER_QUERIES = 8  # InstantX uses 64
IP_VALUE_GAIN = 10.0
MAX_SEQUENCE_LENGTH = 128


def clip_text() -> CLIPTextModelWithProjection:
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(
        components.clip_text_config(
            hidden_size=CLIP_HIDDEN,
            intermediate_size=37,
            num_attention_heads=4,
            hidden_act="gelu",
            projection_dim=CLIP_HIDDEN,
        )
    )


def tiny_components() -> dict:
    """Tiny SD3 components (diffusers' ``get_dummy_components``); 1/8 latents, patch 2 as in SD3."""
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        caption_projection_dim=HIDDEN,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=2 * CLIP_HIDDEN,
        out_channels=4,
    )
    vae = components.flow_vae()
    image_encoder, feature_extractor = components.siglip_vision()
    return {
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "vae": vae,
        "text_encoder": clip_text(),
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": clip_text(),
        "tokenizer_2": clip_tokenizer(),
        "text_encoder_3": components.t5_encoder(T5_WIDTH),
        "tokenizer_3": byte_level_tokenizer(MAX_SEQUENCE_LENGTH),
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
    }


def random_ip_adapter_state_dict(
    transformer: SD3Transformer2DModel,
    image_embed_dim: int = components.VISION_HIDDEN,
    adapter_hidden: int = ADAPTER_HIDDEN,
    adapter_heads: int = 1,
    num_queries: int = ADAPTER_QUERIES,
    timestep_in_dim: int = 32,
    value_gain: float = IP_VALUE_GAIN,
) -> dict:
    """Random weights in the layout ``SD3IPAdapterMixin.load_ip_adapter`` reads (InstantX's).

    Defaults are the tiny twin's; InstantX's SD3.5-Large adapter is ``image_embed_dim=1152,
    adapter_hidden=1280, adapter_heads=20, num_queries=64, timestep_in_dim=320``.
    """
    torch.manual_seed(0)
    hidden_size = transformer.config.attention_head_dim * transformer.config.num_attention_heads
    ip_adapter = {}
    for index, _ in enumerate(transformer.attn_processors):
        processor = SD3IPAdapterJointAttnProcessor2_0(
            hidden_size=hidden_size,
            ip_hidden_states_dim=hidden_size,
            head_dim=transformer.config.attention_head_dim,
            timesteps_emb_dim=adapter_hidden,
        )
        for name, value in processor.state_dict().items():
            if name == "to_v_ip.weight":
                value = value * value_gain  # make the random references visibly matter
            ip_adapter[f"{index}.{name}"] = value.detach().clone()
    projection = IPAdapterTimeImageProjection(
        embed_dim=image_embed_dim,
        output_dim=hidden_size,
        hidden_dim=adapter_hidden,
        depth=4,  # the loader builds exactly four resampler blocks
        dim_head=64,  # the loader infers heads as to_q rows // 64
        heads=adapter_heads,
        num_queries=num_queries,
        timestep_in_dim=timestep_in_dim,
    )
    # diffusers-named keys pass through the InstantX -> diffusers renaming unchanged
    image_proj = {name: value.detach().clone() for name, value in projection.state_dict().items()}
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def build_pipeline() -> StableDiffusion3Pipeline:
    """The tiny SD3 pipeline with a random IP-Adapter."""
    pipe = StableDiffusion3Pipeline(**tiny_components())
    pipe.load_ip_adapter(random_ip_adapter_state_dict(pipe.transformer), low_cpu_mem_usage=False)
    components.to_eval_mode(pipe)
    return pipe
