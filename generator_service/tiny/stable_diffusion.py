"""Tiny twin of the SD 1.5 family: the real diffusers classes with tiny random weights.

Seeded, so every process builds identical models; random IP-Adapter weights in h94's checkpoint
layout go through the public ``load_ip_adapter(state_dict)``, as a downloaded adapter would. Runs on
CPU in milliseconds per step. ``random_ip_adapter_state_dict`` also builds the real-size random
adapters of ``benchmarks/gpu_generators.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection
from transformers import CLIPTextModel

from generator_service.tiny import components
from generator_service.tiny.tokenizers import clip_tokenizer

CROSS_ATTENTION_DIM = 8
PLUS_QUERIES = 16  # as in h94's Plus adapters
IP_VALUE_GAIN = 10.0


def tiny_components() -> dict:
    """Tiny SD components (diffusers' ``get_dummy_components``), with the real CLIP tokenizer.

    The VAE has four levels so that, as in the real model, latents are 1/8 of the image size.
    """
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    vae = components.vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        components.clip_text_config(hidden_size=CROSS_ATTENTION_DIM, intermediate_size=16, num_attention_heads=2)
    )
    image_encoder, feature_extractor = components.clip_vision(projection_dim=CROSS_ATTENTION_DIM)
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "safety_checker": None,
        "feature_extractor": feature_extractor,
        "image_encoder": image_encoder,
        "requires_safety_checker": False,
    }


def random_ip_adapter_state_dict(
    unet: UNet2DConditionModel,
    image_embed_dim: int,
    variant: str,
    plus_hidden_dims: int = 32,
    plus_heads: int = 1,
    plus_queries: int = PLUS_QUERIES,
    value_gain: float = IP_VALUE_GAIN,
) -> dict:
    """Random IP-Adapter weights in h94's checkpoint layout, shaped for ``unet``.

    Mirrors diffusers' ``create_ip_adapter_state_dict`` test helper: one k/v projection pair per
    cross-attention layer (ids 1, 3, 5, ...), plus the image projection (base: ``ImageProjection``;
    Plus: the ``IPAdapterPlusImageProjection`` resampler, keys mapped back to h94 names). The
    defaults are the tiny twin's; h94's SDXL Plus is ``plus_hidden_dims=1280, plus_heads=20``.
    """
    torch.manual_seed(0)
    cross_attention_dim = unet.config.cross_attention_dim
    num_tokens = plus_queries if variant == "plus" else 4
    ip_adapter = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden_size = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden_size = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden_size = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        processor = IPAdapterAttnProcessor2_0(hidden_size, cross_attention_dim, num_tokens=num_tokens)
        ip_adapter[f"{key_id}.to_k_ip.weight"] = processor.to_k_ip[0].weight.detach().clone()
        # default init gives the references a barely visible effect on a random UNet; the gain makes
        # the tiny twin's outputs depend on its references about as much as on its prompt
        ip_adapter[f"{key_id}.to_v_ip.weight"] = processor.to_v_ip[0].weight.detach() * value_gain
        key_id += 2

    projection: torch.nn.Module
    if variant == "plus":
        projection = IPAdapterPlusImageProjection(
            embed_dims=image_embed_dim,
            output_dims=cross_attention_dim,
            hidden_dims=plus_hidden_dims,
            depth=4,  # the loader converts exactly four resampler blocks
            dim_head=64,  # the loader infers heads as to_q rows // 64
            heads=plus_heads,
            num_queries=plus_queries,
        )
        image_proj = _plus_projection_to_h94(projection.state_dict())
    else:
        projection = ImageProjection(
            cross_attention_dim=cross_attention_dim, image_embed_dim=image_embed_dim, num_image_text_embeds=4
        )
        image_proj = {k.replace("image_embeds", "proj"): v for k, v in projection.state_dict().items()}
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def _plus_projection_to_h94(state_dict: dict) -> dict:
    """Inverse of diffusers' h94 -> diffusers key conversion for the Plus resampler."""
    renamed = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith("layers."):
            renamed[key] = value
            continue
        _, index, rest = key.split(".", 2)
        prefix = f"layers.{index}"
        if rest.startswith("attn.to_v."):
            continue  # folded into to_kv with to_k
        if rest.startswith("attn.to_k."):
            suffix = rest[len("attn.to_k.") :]
            renamed[f"{prefix}.0.to_kv.{suffix}"] = torch.cat([value, state_dict[key.replace("to_k.", "to_v.")]])
        elif rest.startswith("attn.to_q."):
            renamed[f"{prefix}.0.to_q.{rest[len('attn.to_q.'):]}"] = value
        elif rest.startswith("attn.to_out.0."):
            renamed[f"{prefix}.0.to_out.{rest[len('attn.to_out.0.'):]}"] = value
        elif rest.startswith("ln0."):
            renamed[f"{prefix}.0.norm1.{rest[len('ln0.'):]}"] = value
        elif rest.startswith("ln1."):
            renamed[f"{prefix}.0.norm2.{rest[len('ln1.'):]}"] = value
        elif rest.startswith("ff.0."):
            renamed[f"{prefix}.1.0.{rest[len('ff.0.'):]}"] = value
        elif rest.startswith("ff.1.net.0.proj."):
            renamed[f"{prefix}.1.1.{rest[len('ff.1.net.0.proj.'):]}"] = value
        elif rest.startswith("ff.1.net.2."):
            renamed[f"{prefix}.1.3.{rest[len('ff.1.net.2.'):]}"] = value
        else:
            raise KeyError(f"unexpected Plus resampler key {key}")
    return renamed


def with_random_ip_adapter(pipe, cross_attention_dim: int, variant: str):
    """Load a random adapter into a tiny SD-lineage pipeline (SDXL's too) and switch it to eval."""
    # base adapters read the projected image_embeds, Plus adapters the tower's hidden states
    image_embed_dim = components.VISION_HIDDEN if variant == "plus" else cross_attention_dim
    state_dict = random_ip_adapter_state_dict(pipe.unet, image_embed_dim, variant)
    pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", low_cpu_mem_usage=False)
    components.to_eval_mode(pipe)
    return pipe


def build_pipeline(variant: str) -> StableDiffusionPipeline:
    """The tiny SD pipeline with a random base or Plus IP-Adapter."""
    return with_random_ip_adapter(StableDiffusionPipeline(**tiny_components()), CROSS_ATTENTION_DIM, variant)
