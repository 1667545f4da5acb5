"""Tiny twin of world-sd: the same classes with a narrow config and seeded random weights."""

from __future__ import annotations

import torch

from generator_service.world_sd import ReferenceEncoder, WorldSDConfig, WorldSDPipeline, WorldTextEncoder, build_unet


def tiny_config() -> WorldSDConfig:
    return WorldSDConfig(block_out_channels=(16, 32), attention_heads=2, norm_num_groups=8, ref_width=8, ref_embed_dim=16,
                         ref_tokens=2, text_vocab=512, text_width=16, text_layers=1, text_heads=2)


def build_pipeline(device: str = "cpu") -> WorldSDPipeline:
    cfg = tiny_config()
    torch.manual_seed(0)
    unet, ref_encoder, text_encoder = build_unet(cfg), ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim), WorldTextEncoder(cfg)
    return WorldSDPipeline(cfg, unet, ref_encoder, text_encoder, device)
