"""Latency and memory of the generator families, with and without reference conditioning.

GPU mode (default) builds the real-size architectures of SD 1.5, SDXL, SD3-medium, FLUX.1-dev and
OmniGen v1 from their configs (written out below) with random weights -- timing does not depend on
the weights -- plus real-size random IP-Adapters and image encoders, in fp16/bf16. Each model runs
through its family's production ``Generator.generate`` (the same code the worker runs):

* per-step latency: median time between step callbacks (CFG / true-CFG passes included);
* end-to-end latency: the whole call (text encoders, reference encoders, denoising, VAE decode);
* VAE decode alone, peak GPU memory, and the conditioning overhead (with refs / without).

``--smoke`` runs the tiny twins from models.toml on CPU instead (plumbing check, < 1 min).

    python benchmarks/gpu_generators.py                 # one H100/H200, < 8 min
    python benchmarks/gpu_generators.py --smoke         # CPU, tiny twins
    python benchmarks/gpu_generators.py --check-configs # parameter counts on the meta device

Results: a rich table on stdout and JSON in benchmarks/results/gpu_generators[_smoke].json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from generator_service.families.common import DTYPES  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Denoiser sizes of the released checkpoints (OmniGen: "3.8B" on its model card), for --check-configs.
EXPECTED_PARAMS = {
    "sd15": ("unet", 859.5e6),
    "sdxl": ("unet", 2567.5e6),
    "sd3-medium": ("transformer", 2028.3e6),
    "flux-dev": ("transformer", 11901.4e6),
    "omnigen": ("transformer", 3.8e9),
}


# ---------------------------------------------------------------------------------------------
# real-size configs
# ---------------------------------------------------------------------------------------------


def clip_l_text_config(with_projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=with_projection_dim or 768,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def clip_bigg_text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=20,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=1280,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def t5_xxl_config():
    from transformers import T5Config

    return T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def vit_h_image_config():
    """OpenCLIP ViT-H/14 as shipped in h94/IP-Adapter models/image_encoder."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
        hidden_act="gelu",
    )


def vit_l_image_config():
    """OpenAI CLIP ViT-L/14 (XLabs Flux IP-Adapter)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=768,
        hidden_act="quick_gelu",
    )


def siglip_so400m_config():
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        patch_size=14,
        image_size=384,
    )


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )


def sdxl_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        cross_attention_dim=2048,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


def sd3_medium_transformer():
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        num_layers=24,
        attention_head_dim=64,
        num_attention_heads=24,
        joint_attention_dim=4096,
        caption_projection_dim=1536,
        pooled_projection_dim=2048,
        out_channels=16,
        pos_embed_max_size=192,
    )


def flux_dev_transformer():
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )


def omnigen_transformer():
    from diffusers import OmniGenTransformer2DModel

    head_dim = 3072 // 32
    return OmniGenTransformer2DModel(
        hidden_size=3072,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=8192,
        num_layers=32,
        vocab_size=32064,
        pad_token_id=32000,
        rope_scaling={"long_factor": [1.0] * (head_dim // 2), "short_factor": [1.0] * (head_dim // 2)},
    )


def sd_vae(latent_channels: int = 4, scaling_factor: float = 0.18215, shift_factor: float | None = None):
    from diffusers import AutoencoderKL

    quant = latent_channels == 4  # SD/SDXL VAEs have quant convs; the 16-channel SD3/Flux VAEs don't
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        latent_channels=latent_channels,
        norm_num_groups=32,
        sample_size=1024,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant,
        use_post_quant_conv=quant,
        force_upcast=False,
    )


# ---------------------------------------------------------------------------------------------
# builders: real-size random pipelines wrapped in the family generators
# ---------------------------------------------------------------------------------------------


def _component(factory: Callable, device: str, dtype: torch.dtype):
    """Initialise on the target device (fast), cast right away (keeps the fp32 peak to one module)."""
    with torch.device(device):
        module = factory()
    return module.to(dtype=dtype).eval()


def _spec(key: str, family: str, **fields):
    from services.registry import ModelSpec

    return ModelSpec(key=key, family=family, source="random-real-size", adapter="random", **fields)


def build_sd15(device: str, dtype: torch.dtype):
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionModelWithProjection

    from generator_service.families.stable_diffusion import StableDiffusionGenerator
    from generator_service.tiny.stable_diffusion import random_ip_adapter_state_dict
    from generator_service.tiny.tokenizers import clip_tokenizer

    unet = _component(sd15_unet, device, dtype)
    pipe = StableDiffusionPipeline(
        vae=_component(sd_vae, device, dtype),
        text_encoder=_component(lambda: CLIPTextModel(clip_l_text_config()), device, dtype),
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
            clip_sample=False, set_alpha_to_one=False,
        ),
        safety_checker=None,
        feature_extractor=CLIPImageProcessor(size=224, crop_size=224),
        image_encoder=_component(lambda: CLIPVisionModelWithProjection(vit_h_image_config()), device, dtype),
        requires_safety_checker=False,
    )
    with torch.device(device):  # h94 ip-adapter_sd15: ViT-H image_embeds (1024) -> 4 tokens
        state_dict = random_ip_adapter_state_dict(unet, 1024, "base", value_gain=1.0)
    with torch.device(device):  # the adapter's modules are created on the device, not on the CPU
        pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", low_cpu_mem_usage=False)
    pipe.to(device, dtype)
    spec = _spec("sd15", "sd", dtype=_dtype_name(dtype), max_references=3)
    return StableDiffusionGenerator(spec, pipe, device)


def build_sdxl(device: str, dtype: torch.dtype):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from generator_service.families.stable_diffusion import StableDiffusionGenerator
    from generator_service.tiny.stable_diffusion import random_ip_adapter_state_dict
    from generator_service.tiny.tokenizers import clip_tokenizer

    unet = _component(sdxl_unet, device, dtype)
    pipe = StableDiffusionXLPipeline(
        vae=_component(lambda: sd_vae(scaling_factor=0.13025), device, dtype),
        text_encoder=_component(lambda: CLIPTextModel(clip_l_text_config()), device, dtype),
        text_encoder_2=_component(lambda: CLIPTextModelWithProjection(clip_bigg_text_config()), device, dtype),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, timestep_spacing="leading"
        ),
        image_encoder=_component(lambda: CLIPVisionModelWithProjection(vit_h_image_config()), device, dtype),
        feature_extractor=CLIPImageProcessor(size=224, crop_size=224),
        add_watermarker=False,
    )
    with torch.device(device):  # ip-adapter-plus_sdxl_vit-h: ViT-H hidden_states[-2] -> 16 tokens
        state_dict = random_ip_adapter_state_dict(
            unet, 1280, "plus", plus_hidden_dims=1280, plus_heads=20, plus_queries=16, value_gain=1.0
        )
    with torch.device(device):  # the adapter's modules are created on the device, not on the CPU
        pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", low_cpu_mem_usage=False)
    pipe.to(device, dtype)
    spec = _spec("sdxl", "sdxl", dtype=_dtype_name(dtype), adapter_variant="plus", max_references=3)
    return StableDiffusionGenerator(spec, pipe, device)


def build_sd3_medium(device: str, dtype: torch.dtype):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, SiglipImageProcessor, SiglipVisionModel, T5EncoderModel

    from generator_service.families.stable_diffusion_3 import StableDiffusion3Generator
    from generator_service.tiny.stable_diffusion_3 import random_ip_adapter_state_dict
    from generator_service.tiny.tokenizers import byte_level_tokenizer, clip_tokenizer

    transformer = _component(sd3_medium_transformer, device, dtype)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_component(lambda: sd_vae(16, scaling_factor=1.5305, shift_factor=0.0609), device, dtype),
        text_encoder=_component(lambda: CLIPTextModelWithProjection(clip_l_text_config(768)), device, dtype),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_component(lambda: CLIPTextModelWithProjection(clip_bigg_text_config()), device, dtype),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=_component(lambda: T5EncoderModel(t5_xxl_config()), device, dtype),
        tokenizer_3=byte_level_tokenizer(256),
        image_encoder=_component(lambda: SiglipVisionModel(siglip_so400m_config()), device, dtype),
        feature_extractor=SiglipImageProcessor(size={"height": 384, "width": 384}),
    )
    # InstantX's adapter architecture (SigLIP 729x1152 -> 64 queries), at SD3-medium's width
    with torch.device(device):
        state_dict = random_ip_adapter_state_dict(
            transformer, 1152, adapter_hidden=1280, adapter_heads=20, num_queries=64, timestep_in_dim=320, value_gain=1.0
        )
    with torch.device(device):
        pipe.load_ip_adapter(state_dict, low_cpu_mem_usage=False)
    pipe.to(device, dtype)
    spec = _spec("sd3-medium", "sd3", dtype=_dtype_name(dtype), max_references=1)
    return StableDiffusion3Generator(spec, pipe, device)


def build_flux_dev(device: str, dtype: torch.dtype):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPVisionModelWithProjection, T5EncoderModel

    from generator_service.families.flux import FluxGenerator
    from generator_service.tiny.flux import random_ip_adapter_state_dict
    from generator_service.tiny.tokenizers import byte_level_tokenizer, clip_tokenizer

    transformer = _component(flux_dev_transformer, device, dtype)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=_component(lambda: sd_vae(16, scaling_factor=0.3611, shift_factor=0.1159), device, dtype),
        text_encoder=_component(lambda: CLIPTextModel(clip_l_text_config()), device, dtype),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_component(lambda: T5EncoderModel(t5_xxl_config()), device, dtype),
        tokenizer_2=byte_level_tokenizer(512),
        transformer=transformer,
        image_encoder=_component(lambda: CLIPVisionModelWithProjection(vit_l_image_config()), device, dtype),
        feature_extractor=CLIPImageProcessor(size=224, crop_size=224),
    )
    with torch.device(device):  # XLabs flux-ip-adapter: CLIP-L image_embeds (768) -> 4 tokens of 4096
        state_dict = random_ip_adapter_state_dict(transformer, 768, value_gain=1.0)
    with torch.device(device):
        pipe.load_ip_adapter(
            state_dict, weight_name="", image_encoder_pretrained_model_name_or_path=None, low_cpu_mem_usage=False
        )
    pipe.to(device, dtype)
    spec = _spec("flux-dev", "flux", dtype=_dtype_name(dtype), max_references=3, options={"true_cfg_scale": 4.0})
    return FluxGenerator(spec, pipe, None, device)


def build_omnigen(device: str, dtype: torch.dtype):
    from diffusers import FlowMatchEulerDiscreteScheduler, OmniGenPipeline

    from generator_service.families.omnigen import OmniGenGenerator
    from generator_service.tiny.tokenizers import byte_level_tokenizer

    transformer = _component(omnigen_transformer, device, dtype)
    pipe = OmniGenPipeline(
        transformer=transformer,
        vae=_component(lambda: sd_vae(scaling_factor=0.13025), device, dtype),
        scheduler=FlowMatchEulerDiscreteScheduler(invert_sigmas=True, num_train_timesteps=1),
        # byte-level text: ~3x more text tokens than Phi-3's tokenizer, a few % of OmniGen's sequence
        tokenizer=byte_level_tokenizer(120000, add_bos=True, add_eos=False),
    )
    pipe.to(device, dtype)
    spec = _spec(
        "omnigen", "omnigen", dtype=_dtype_name(dtype), max_references=3,
        options={"img_guidance_scale": 1.6, "max_input_image_size": 512},
    )
    return OmniGenGenerator(spec, pipe, device)


@dataclass
class Case:
    name: str
    build: Callable
    dtype: str
    size: int
    references: int
    guidance: float
    ip_scale: float
    default_steps: int
    note: str = ""


GPU_CASES = [
    Case("sd15", build_sd15, "float16", 512, 3, 7.5, 0.6, 30, "h94 base adapter, ViT-H, CFG"),
    Case("sdxl", build_sdxl, "float16", 1024, 3, 5.0, 0.5, 30, "h94 Plus ViT-H adapter, CFG"),
    Case("sd3-medium", build_sd3_medium, "float16", 1024, 1, 5.0, 0.6, 24, "InstantX-style adapter, SigLIP, CFG"),
    Case("flux-dev", build_flux_dev, "bfloat16", 1024, 3, 3.5, 1.0, 28, "XLabs adapter, CLIP-L, true CFG 4.0 (2 passes)"),
    Case("omnigen", build_omnigen, "bfloat16", 1024, 3, 2.5, 1.0, 50, "refs 512 px in-sequence, 3 CFG branches with refs"),
]

SMOKE_KEYS = ["tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-flux-redux", "tiny-omnigen"]


def _dtype_name(dtype: torch.dtype) -> str:
    return {value: key for key, value in DTYPES.items()}[dtype]


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reference_images(count: int, size: int) -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8")) for _ in range(count)]


def timed_generate(generator, device: str, size: int, steps: int, guidance: float, ip_scale: float, refs) -> dict:
    from generator_service.families.base import GenerationInputs

    stamps: list[float] = []

    def on_step(done: int, total: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    images = generator.generate(
        GenerationInputs(
            prompt="a photo of a red fox standing in fresh snow, detailed fur, morning light",
            seeds=[0],
            steps=steps,
            guidance=guidance,
            width=size,
            height=size,
            references=list(refs),
            reference_labels=["red fox"] * len(refs),
            ip_scale=ip_scale,
            on_step=on_step,
        )
    )
    _sync(device)
    end = time.perf_counter()
    assert images[0].size == (size, size)
    deltas = [b - a for a, b in pairwise(stamps)]
    return {
        "steps": steps,
        "step_ms": 1000 * statistics.median(deltas) if deltas else None,
        "first_step_ms": 1000 * (stamps[0] - start),  # includes text/reference encoding
        "end_to_end_s": end - start,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }


@torch.no_grad()
def vae_decode_ms(generator, device: str, size: int, repeats: int = 3) -> float:
    vae = generator.pipe.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(1, vae.config.latent_channels, size // factor, size // factor, device=device, dtype=vae.dtype)
    vae.decode(latents)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        vae.decode(latents)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(name, generator, device, size, steps, guidance, ip_scale, references, default_steps, note, dtype) -> dict:
    refs = reference_images(references, 512 if size >= 512 else size)
    # warm-up both paths (kernel selection, lazy init) before timing
    timed_generate(generator, device, size, 2, guidance, ip_scale, [])
    timed_generate(generator, device, size, 2, guidance, ip_scale, refs)
    plain = timed_generate(generator, device, size, steps, guidance, ip_scale, [])
    conditioned = timed_generate(generator, device, size, steps, guidance, ip_scale, refs)

    def ratio(a, b):
        return a / b if a and b else None

    def at_default(run):
        if run["step_ms"] is None:
            return None
        return run["end_to_end_s"] + (default_steps - steps) * run["step_ms"] / 1000

    return {
        "model": name,
        "dtype": dtype,
        "size": size,
        "references": references,
        "note": note,
        "without_references": plain,
        "with_references": conditioned,
        "step_overhead": ratio(conditioned["step_ms"], plain["step_ms"]),
        "end_to_end_overhead": ratio(conditioned["end_to_end_s"], plain["end_to_end_s"]),
        "default_steps": default_steps,
        "estimated_end_to_end_s_at_default_steps": {"without": at_default(plain), "with": at_default(conditioned)},
        "vae_decode_ms": vae_decode_ms(generator, device, size),
    }


def machine_info(device: str) -> dict:
    import diffusers
    import transformers

    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def run_gpu(args) -> list[dict]:
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke for the CPU plumbing check")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results = []
    for case in GPU_CASES:
        if args.models and case.name not in args.models:
            continue
        dtype = DTYPES[args.dtype or case.dtype]
        size = args.size or case.size
        started = time.perf_counter()
        print(f"[{case.name}] building real-size random {case.name} ({_dtype_name(dtype)}) ...", flush=True)
        generator = case.build(device, dtype)
        build_s = time.perf_counter() - started
        result = measure(
            case.name, generator, device, size, args.steps, case.guidance, case.ip_scale,
            case.references, case.default_steps, case.note, _dtype_name(dtype),
        )
        result["build_s"] = build_s
        result["total_s"] = time.perf_counter() - started
        results.append(result)
        print(f"[{case.name}] done in {result['total_s']:.1f} s", flush=True)
        del generator
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results


def run_smoke(args) -> list[dict]:
    from generator_service.families import family_module
    from services.registry import PACKAGED_MODELS, _read

    torch.set_num_threads(args.threads)
    specs = _read(PACKAGED_MODELS)
    results = []
    for key in SMOKE_KEYS:
        if args.models and key not in args.models:
            continue
        spec = specs[key]
        started = time.perf_counter()
        generator = family_module(spec).load(spec, "cpu")
        build_s = time.perf_counter() - started
        note = spec.description.split("(")[0].strip()
        result = measure(
            key, generator, "cpu", args.size or spec.default_width, args.steps, spec.default_guidance,
            spec.default_ip_scale, spec.max_references, spec.default_steps, note, spec.dtype,
        )
        result["build_s"] = build_s
        result["total_s"] = time.perf_counter() - started
        results.append(result)
    return results


DENOISERS = {
    "sd15": sd15_unet,
    "sdxl": sdxl_unet,
    "sd3-medium": sd3_medium_transformer,
    "flux-dev": flux_dev_transformer,
    "omnigen": omnigen_transformer,
}


def check_configs() -> bool:
    """Build every real-size denoiser on the meta device and compare its size with the published one."""
    all_ok = True
    for name, factory in DENOISERS.items():
        with torch.device("meta"):
            module = factory()
        count = sum(p.numel() for p in module.parameters())
        component, expected = EXPECTED_PARAMS[name]
        ok = abs(count - expected) / expected < 0.02
        all_ok &= ok
        print(f"{name:11s} {component:11s} {count / 1e6:9.1f} M params (reference {expected / 1e6:.1f} M) {'ok' if ok else 'MISMATCH'}")
    return all_ok


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def print_table(results: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value, spec=".1f"):
        return "-" if value is None else f"{value:{spec}}"

    table = Table(title=title)
    for column in (
        "model", "dtype", "size", "refs", "step ms\nno ref", "step ms\nrefs", "step\n×",
        "e2e ms\nno ref", "e2e ms\nrefs", "e2e\n×", "e2e s @ default\nsteps (no ref/refs)", "VAE\ndecode ms",
        "peak GiB\nno ref", "peak GiB\nrefs",
    ):
        table.add_column(column, justify="left" if column in ("model", "dtype") else "right")
    for r in results:
        plain, cond = r["without_references"], r["with_references"]
        estimate = r["estimated_end_to_end_s_at_default_steps"]
        table.add_row(
            r["model"], r["dtype"], f"{r['size']}²", str(r["references"]),
            fmt(plain["step_ms"]), fmt(cond["step_ms"]), fmt(r["step_overhead"], ".2f"),
            fmt(1000 * plain["end_to_end_s"], ".0f"), fmt(1000 * cond["end_to_end_s"], ".0f"),
            fmt(r["end_to_end_overhead"], ".2f"),
            f"{fmt(estimate['without'], '.2f')} / {fmt(estimate['with'], '.2f')} ({r['default_steps']})",
            fmt(r["vae_decode_ms"]), fmt(plain["peak_gib"], ".1f"), fmt(cond["peak_gib"], ".1f"),
        )
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny twins on CPU instead of real sizes on the GPU")
    parser.add_argument("--check-configs", action="store_true", help="parameter counts of the real-size configs")
    parser.add_argument("--models", nargs="*", help="subset of model names (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per call (GPU 8, smoke 4)")
    parser.add_argument("--size", type=int, default=None, help="override the output size")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="override each model's dtype")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for --smoke")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # config dumps and cast warnings of random models
    transformers.utils.logging.set_verbosity_error()
    if args.check_configs:
        return 0 if check_configs() else 1
    args.steps = args.steps or (4 if args.smoke else 8)
    started = time.perf_counter()
    results = run_smoke(args) if args.smoke else run_gpu(args)
    device = "cpu" if args.smoke else args.device
    report = {
        "benchmark": "gpu_generators",
        "mode": "smoke (tiny twins, CPU)" if args.smoke else "real-size random weights",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(device),
        "timed_steps": args.steps,
        "wall_s": time.perf_counter() - started,
        "results": results,
    }
    output = args.output or RESULTS_DIR / ("gpu_generators_smoke.json" if args.smoke else "gpu_generators.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, f"generators — {report['mode']} — {report['machine'].get('gpu', device)}")
    print(f"wrote {output} ({report['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
