"""Tiny twin of OmniGen v1: a one-layer transformer over a byte-level Llama-style vocabulary."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, OmniGenPipeline, OmniGenTransformer2DModel

from generator_service.tiny import components
from generator_service.tiny.tokenizers import BYTE_PAD_ID, BYTE_VOCAB_SIZE, byte_level_tokenizer

ATTENTION_GAIN = 4.0
INPUT_IMAGE_GAIN = 10.0


def tiny_components() -> dict:
    """Tiny OmniGen (diffusers' ``get_dummy_components``), byte-level Llama-style tokenizer, 1/8 VAE."""
    torch.manual_seed(0)
    transformer = OmniGenTransformer2DModel(
        hidden_size=16,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=32,
        num_layers=1,
        in_channels=4,
        time_step_dim=4,
        vocab_size=BYTE_VOCAB_SIZE,
        pad_token_id=BYTE_PAD_ID,
        rope_scaling={"long_factor": list(range(1, 3)), "short_factor": list(range(1, 3))},
    )
    return {
        "transformer": transformer,
        "vae": components.vae(),
        "scheduler": FlowMatchEulerDiscreteScheduler(invert_sigmas=True, num_train_timesteps=1),
        "tokenizer": byte_level_tokenizer(4096, add_bos=True, add_eos=False),
    }


def build_pipeline() -> OmniGenPipeline:
    """The tiny OmniGen pipeline, with attention sharpened so the references visibly matter."""
    pipe = OmniGenPipeline(**tiny_components())
    # At default init the tiny transformer's attention is nearly uniform over ~100 byte tokens, so the
    # reference tokens barely move the output; sharper attention and louder image tokens fix that.
    with torch.no_grad():
        for layer in pipe.transformer.layers:
            layer.self_attn.to_q.weight.mul_(ATTENTION_GAIN)
            layer.self_attn.to_k.weight.mul_(ATTENTION_GAIN)
            layer.self_attn.to_v.weight.mul_(ATTENTION_GAIN)
        pipe.transformer.patch_embedding.input_image_proj.weight.mul_(INPUT_IMAGE_GAIN)
    components.to_eval_mode(pipe)
    return pipe
