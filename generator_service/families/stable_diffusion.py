"""Stable Diffusion 1.5 / 2.1 with an h94-style IP-Adapter (base or Plus).

The k retrieved references go into ONE pipeline call as ``ip_adapter_image=[[r1, ..., rk]]``: the
adapter concatenates 4 (base) or 16 (Plus) projected tokens per reference in its cross-attention.

``source = "tiny"`` builds the same diffusers classes with tiny random weights (seeded, so every
process builds identical models) and random IP-Adapter weights loaded through the public
``load_ip_adapter(state_dict)``; it runs on CPU in milliseconds per step. Any other source is an HF
id or a local directory with real weights.

Reference embeddings (``encode_references``) are one tensor of shape ``(2, k, *per_image)``, the
negative half first, exactly what ``pipe.prepare_ip_adapter_image_embeds`` produces under CFG; the
reference axis is 1, so per-reference slices can be cached and concatenated.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from generator_service.families.base import GenerationInputs
from generator_service.tiny.tokenizers import CLIP_BOS_ID, CLIP_EOS_ID, CLIP_VOCAB_SIZE, clip_tokenizer
from services.registry import ModelSpec

FAMILY = "sd"

TINY_CROSS_ATTENTION_DIM = 8
TINY_VISION_HIDDEN = 32
TINY_VISION_IMAGE_SIZE = 32
TINY_PLUS_QUERIES = 16  # as in h94's Plus adapters
TINY_IP_VALUE_GAIN = 10.0

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------------------------------
# tiny twin
# ---------------------------------------------------------------------------------------------


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
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
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
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8, 8, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=CLIP_BOS_ID,
            eos_token_id=CLIP_EOS_ID,
            pad_token_id=CLIP_EOS_ID,
            hidden_size=TINY_CROSS_ATTENTION_DIM,
            intermediate_size=16,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=CLIP_VOCAB_SIZE,
            max_position_embeddings=77,
        )
    )
    image_encoder, feature_extractor = tiny_image_encoder(projection_dim=TINY_CROSS_ATTENTION_DIM)
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


def tiny_image_encoder(projection_dim: int) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=TINY_VISION_HIDDEN,
            image_size=TINY_VISION_IMAGE_SIZE,
            patch_size=8,
            projection_dim=projection_dim,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    processor = CLIPImageProcessor(
        crop_size=TINY_VISION_IMAGE_SIZE,
        size=TINY_VISION_IMAGE_SIZE,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    return encoder, processor


def random_ip_adapter_state_dict(
    unet: UNet2DConditionModel,
    image_embed_dim: int,
    variant: str,
    plus_hidden_dims: int = 32,
    plus_heads: int = 1,
    plus_queries: int = TINY_PLUS_QUERIES,
    value_gain: float = TINY_IP_VALUE_GAIN,
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


def to_eval_mode(pipe) -> None:
    # modules built from configs start in training mode (T5 dropout would make outputs random)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def build_tiny_pipeline(variant: str) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(**tiny_components())
    image_embed_dim = TINY_VISION_HIDDEN if variant == "plus" else TINY_CROSS_ATTENTION_DIM
    state_dict = random_ip_adapter_state_dict(pipe.unet, image_embed_dim, variant)
    pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", low_cpu_mem_usage=False)
    to_eval_mode(pipe)
    return pipe


# ---------------------------------------------------------------------------------------------
# real weights
# ---------------------------------------------------------------------------------------------


def build_pipeline(spec: ModelSpec) -> StableDiffusionPipeline:
    """SD 1.5 / 2.1 weights (HF id or local dir) + the IP-Adapter named by the spec."""
    dtype = DTYPES[spec.dtype]
    extra = {}
    load_encoder = spec.options.get("load_image_encoder", True)
    if spec.image_encoder and load_encoder:
        extra["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        spec.source,
        dtype=dtype,
        revision=spec.revision,
        safety_checker=None,
        requires_safety_checker=False,
        **extra,
    )
    if not spec.adapter:
        if spec.max_references:
            raise ValueError(f"model {spec.key!r}: max_references > 0 needs an IP-Adapter (`adapter`)")
        return pipe  # text-to-image only (e.g. SD 2.1, for which h94 has no adapter)
    pipe.load_ip_adapter(
        spec.adapter,
        subfolder=spec.adapter_subfolder or "",
        weight_name=spec.adapter_weight_name or "ip-adapter_sd15.safetensors",
        # an encoder passed above is already registered; None = embeddings-only worker
        image_encoder_folder="image_encoder" if load_encoder and not spec.image_encoder else None,
    )
    return pipe


def encoder_id(spec: ModelSpec, variant: str) -> str:
    """Identifies the embedding space: the encoder weights and which of its outputs the adapter reads."""
    output = "hidden_states[-2]" if variant == "plus" else "image_embeds"
    if spec.source == "tiny":
        return f"tiny-{spec.family}/clip-vision#{output}"
    encoder = spec.image_encoder or spec.adapter
    subfolder = spec.image_encoder_subfolder or f"{spec.adapter_subfolder or ''}/image_encoder".lstrip("/")
    return f"{encoder}/{subfolder}#{output}"


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class StableDiffusionGenerator:
    """Any ``IPAdapterMixin`` pipeline of the SD lineage (SD 1.5/2.1 here, SDXL reuses it)."""

    def __init__(self, spec: ModelSpec, pipe: StableDiffusionPipeline, device: str):
        self.key = spec.key
        self.family = spec.family
        self.spec = spec
        self.pipe = pipe
        self.device = device
        self.max_references = spec.max_references
        self.variant = spec.adapter_variant
        self.has_adapter = getattr(pipe.unet, "encoder_hid_proj", None) is not None
        self.image_encoder_id = encoder_id(spec, self.variant) if self.has_adapter else None
        self.size_multiple = max(spec.size_multiple, 8)
        self.pipe.set_progress_bar_config(disable=True)

    # -- validation -----------------------------------------------------------------------

    def check_inputs(self, inputs: GenerationInputs) -> None:
        for name, value in (("width", inputs.width), ("height", inputs.height)):
            if value <= 0 or value % self.size_multiple:
                raise ValueError(
                    f"model {self.key!r}: {name}={value} must be a positive multiple of {self.size_multiple}"
                )
        if not inputs.seeds:
            raise ValueError(f"model {self.key!r}: at least one seed is required")
        if inputs.steps < 1:
            raise ValueError(f"model {self.key!r}: steps must be >= 1, got {inputs.steps}")
        count = len(inputs.references)
        if inputs.reference_embeds is not None:
            count = self._embeds_tensor(inputs.reference_embeds).shape[1]
        if count > self.max_references:
            raise ValueError(
                f"model {self.key!r} accepts at most {self.max_references} reference images, got {count}"
            )

    # -- reference embeddings -------------------------------------------------------------

    @torch.no_grad()
    def encode_references(self, images: list[Image.Image]) -> torch.Tensor:
        """Adapter embeddings of ``images``: ``(2, k, *per_image)``, negative half first, on CPU."""
        if not images:
            raise ValueError("encode_references needs at least one image")
        if not self.has_adapter:
            raise ValueError(f"model {self.key!r} has no IP-Adapter; it cannot use references")
        if self.pipe.image_encoder is None:
            raise ValueError(f"model {self.key!r} was loaded without an image encoder; pass embeddings")
        embeds = self.pipe.prepare_ip_adapter_image_embeds(
            ip_adapter_image=[list(images)],
            ip_adapter_image_embeds=None,
            device=self._execution_device(),
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
        return embeds[0].float().cpu()

    def _embeds_tensor(self, reference_embeds) -> torch.Tensor:
        embeds = reference_embeds[0] if isinstance(reference_embeds, (list, tuple)) else reference_embeds
        if not isinstance(embeds, torch.Tensor) or embeds.ndim < 3 or embeds.shape[0] != 2:
            raise ValueError("reference_embeds must be a (2, k, ...) tensor from encode_references")
        return embeds

    def _no_reference_embeds(self) -> torch.Tensor:
        # shape of one reference, all zeros; only used with the adapter scale at 0 (the IP branch is skipped)
        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        if isinstance(projection, ImageProjection):
            per_image = (projection.image_embeds.in_features,)
        else:
            encoder_config = self.pipe.image_encoder.config if self.pipe.image_encoder is not None else None
            tokens = (encoder_config.image_size // encoder_config.patch_size) ** 2 + 1 if encoder_config else 257
            per_image = (tokens, projection.proj_in.in_features)
        return torch.zeros(2, 1, *per_image)

    # -- generation -----------------------------------------------------------------------

    def _execution_device(self) -> torch.device:
        return self.pipe._execution_device

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        do_cfg = inputs.guidance > 1.0
        conditioning: dict = {}
        if inputs.reference_embeds is not None:
            embeds, scale = self._embeds_tensor(inputs.reference_embeds), inputs.ip_scale
        elif inputs.references:
            embeds, scale = None, inputs.ip_scale
            conditioning["ip_adapter_image"] = [list(inputs.references)]
        elif self.has_adapter:
            embeds, scale = self._no_reference_embeds(), 0.0
        else:
            embeds, scale = None, None  # plain pipeline, no adapter loaded
        if embeds is not None:
            embeds = embeds.to(device=self._execution_device(), dtype=pipe.unet.dtype)
            conditioning["ip_adapter_image_embeds"] = [embeds if do_cfg else embeds[1:]]
        if scale is not None:
            pipe.set_ip_adapter_scale(scale)

        def on_step_end(pipeline, step_index, timestep, callback_kwargs):
            if inputs.on_step is not None:
                inputs.on_step(step_index + 1, pipeline.num_timesteps)
            return callback_kwargs

        result = pipe(
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt,
            height=inputs.height,
            width=inputs.width,
            num_inference_steps=inputs.steps,
            guidance_scale=inputs.guidance,
            num_images_per_prompt=len(inputs.seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
            callback_on_step_end=on_step_end,
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


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
