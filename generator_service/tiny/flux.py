"""Tiny twin of Flux.1: a random XLabs-layout IP-Adapter with a CLIP vision tower, or a tiny Redux
prior (SigLIP + ``ReduxImageEncoder``). ``random_ip_adapter_state_dict`` also builds the real-size
random adapter of ``benchmarks/gpu_generators.py``."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxPriorReduxPipeline, FluxTransformer2DModel
from diffusers.models.embeddings import ImageProjection
from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from transformers import CLIPTextModel

from generator_service.tiny import components
from generator_service.tiny.tokenizers import byte_level_tokenizer, clip_tokenizer

JOINT_DIM = 32  # T5 width
POOLED_DIM = 32  # CLIP text width
IMAGE_EMBED_DIM = 16  # CLIP-L projection (768 in the real encoder)
IP_VALUE_GAIN = 3.0
MAX_SEQUENCE_LENGTH = 128


def tiny_components() -> dict:
    """Tiny Flux components (diffusers' ``get_dummy_components``), with a 4-level VAE (1/8 latents)."""
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=JOINT_DIM,
        pooled_projection_dim=POOLED_DIM,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # as FLUX.1-dev
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        components.clip_text_config(
            hidden_size=POOLED_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            hidden_act="gelu",
            projection_dim=POOLED_DIM,
        )
    )
    text_encoder_2 = components.t5_encoder(JOINT_DIM)
    vae = components.flow_vae()
    # FLUX.1-dev's scheduler config (resolution-dependent shift)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    image_encoder, feature_extractor = components.clip_vision(projection_dim=IMAGE_EMBED_DIM)
    return {
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": byte_level_tokenizer(MAX_SEQUENCE_LENGTH),
        "transformer": transformer,
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
    }


def random_ip_adapter_state_dict(
    transformer: FluxTransformer2DModel, image_embed_dim: int, value_gain: float = IP_VALUE_GAIN
) -> dict:
    """Random XLabs-style weights (diffusers' ``create_flux_ip_adapter_state_dict``).

    One k/v pair with biases per double-stream block, numbered from 0, plus ``ImageProjection``.
    """
    torch.manual_seed(0)
    joint_dim = transformer.config.joint_attention_dim
    ip_adapter = {}
    key_id = 0
    for name in transformer.attn_processors:
        if name.startswith("single_transformer_blocks"):
            continue
        processor = FluxIPAdapterAttnProcessor(
            hidden_size=transformer.inner_dim, cross_attention_dim=joint_dim, num_tokens=(4,)
        )
        ip_adapter[f"{key_id}.to_k_ip.weight"] = processor.to_k_ip[0].weight.detach().clone()
        ip_adapter[f"{key_id}.to_k_ip.bias"] = processor.to_k_ip[0].bias.detach().clone()
        # gain: make the random references visibly matter in the tiny twin
        ip_adapter[f"{key_id}.to_v_ip.weight"] = processor.to_v_ip[0].weight.detach() * value_gain
        ip_adapter[f"{key_id}.to_v_ip.bias"] = processor.to_v_ip[0].bias.detach().clone()
        key_id += 1
    projection = ImageProjection(cross_attention_dim=joint_dim, image_embed_dim=image_embed_dim, num_image_text_embeds=4)
    image_proj = {k.replace("image_embeds", "proj"): v.detach().clone() for k, v in projection.state_dict().items()}
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def build_redux() -> FluxPriorReduxPipeline:
    image_encoder, processor = components.siglip_vision()
    torch.manual_seed(0)
    embedder = ReduxImageEncoder(redux_dim=components.VISION_HIDDEN, txt_in_features=JOINT_DIM)
    redux = FluxPriorReduxPipeline(image_encoder=image_encoder, feature_extractor=processor, image_embedder=embedder)
    components.to_eval_mode(redux)
    return redux


def build_pipeline(redux: bool) -> tuple[FluxPipeline, FluxPriorReduxPipeline | None]:
    """The tiny Flux pipeline with a random IP-Adapter, or without one plus a tiny Redux prior."""
    parts = tiny_components()
    if redux:
        parts["image_encoder"] = parts["feature_extractor"] = None
        pipe = FluxPipeline(**parts)
        components.to_eval_mode(pipe)
        return pipe, build_redux()
    pipe = FluxPipeline(**parts)
    state_dict = random_ip_adapter_state_dict(pipe.transformer, IMAGE_EMBED_DIM)
    pipe.load_ip_adapter(
        state_dict, weight_name="", image_encoder_pretrained_model_name_or_path=None, low_cpu_mem_usage=False
    )
    components.to_eval_mode(pipe)
    return pipe, None
