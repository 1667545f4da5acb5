"""Stable Diffusion 3 / 3.5 with InstantX's SD3.5-Large IP-Adapter (SigLIP so400m encoder).

The adapter reads SigLIP ``hidden_states[-2]`` (729x1152 per image) through a timestep-aware
resampler (``IPAdapterTimeImageProjection``). diffusers supports **one adapter and one reference
image per call**, so ``max_references`` is 1: more references are rejected, never silently dropped.

Reference embeddings (``encode_references``) use the shared layout ``(2, k, tokens, dim)``, the
negative half (zeros, as the pipeline builds it) first; generation takes the single reference slot.

``source = "tiny"`` builds the real classes with tiny random weights (two CLIP text encoders, a
T5 encoder over a byte-level vocabulary, a SigLIP vision tower and a random adapter).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.embeddings import IPAdapterTimeImageProjection
from PIL import Image
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
)

from generator_service.families.base import GenerationInputs
from generator_service.tiny.tokenizers import (
    BYTE_EOS_ID,
    BYTE_PAD_ID,
    BYTE_VOCAB_SIZE,
    CLIP_BOS_ID,
    CLIP_EOS_ID,
    CLIP_VOCAB_SIZE,
    byte_level_tokenizer,
    clip_tokenizer,
)
from services.registry import ModelSpec

FAMILY = "sd3"

TINY_HEAD_DIM = 8
TINY_HEADS = 4
TINY_HIDDEN = TINY_HEAD_DIM * TINY_HEADS
TINY_CLIP_HIDDEN = 32  # two CLIP encoders -> 64 wide prompt embeds, padded to the T5 width
TINY_T5_WIDTH = 64
TINY_SIGLIP_HIDDEN = 32
TINY_SIGLIP_IMAGE_SIZE = 32
TINY_ADAPTER_HIDDEN = 32
TINY_ADAPTER_QUERIES = 8  # InstantX uses 64
TINY_IP_VALUE_GAIN = 10.0
TINY_MAX_SEQUENCE_LENGTH = 128

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# Copied from generator_service.families.stable_diffusion.resolve_device
def resolve_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---------------------------------------------------------------------------------------------
# tiny twin
# ---------------------------------------------------------------------------------------------


def _tiny_clip_text() -> CLIPTextModelWithProjection:
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=CLIP_BOS_ID,
            eos_token_id=CLIP_EOS_ID,
            pad_token_id=CLIP_EOS_ID,
            hidden_size=TINY_CLIP_HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=CLIP_VOCAB_SIZE,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=TINY_CLIP_HIDDEN,
        )
    )


def tiny_t5(width: int) -> T5EncoderModel:
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


def tiny_siglip() -> tuple[SiglipVisionModel, SiglipImageProcessor]:
    torch.manual_seed(0)
    encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=TINY_SIGLIP_HIDDEN,
            image_size=TINY_SIGLIP_IMAGE_SIZE,
            patch_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    processor = SiglipImageProcessor(size={"height": TINY_SIGLIP_IMAGE_SIZE, "width": TINY_SIGLIP_IMAGE_SIZE})
    return encoder, processor


def tiny_components() -> dict:
    """Tiny SD3 components (diffusers' ``get_dummy_components``); 1/8 latents, patch 2 as in SD3."""
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=TINY_HEAD_DIM,
        num_attention_heads=TINY_HEADS,
        caption_projection_dim=TINY_HIDDEN,
        joint_attention_dim=TINY_T5_WIDTH,
        pooled_projection_dim=2 * TINY_CLIP_HIDDEN,
        out_channels=4,
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
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    image_encoder, feature_extractor = tiny_siglip()
    return {
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "vae": vae,
        "text_encoder": _tiny_clip_text(),
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": _tiny_clip_text(),
        "tokenizer_2": clip_tokenizer(),
        "text_encoder_3": tiny_t5(TINY_T5_WIDTH),
        "tokenizer_3": byte_level_tokenizer(TINY_MAX_SEQUENCE_LENGTH),
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
    }


def random_ip_adapter_state_dict(
    transformer: SD3Transformer2DModel,
    image_embed_dim: int = TINY_SIGLIP_HIDDEN,
    adapter_hidden: int = TINY_ADAPTER_HIDDEN,
    adapter_heads: int = 1,
    num_queries: int = TINY_ADAPTER_QUERIES,
    timestep_in_dim: int = 32,
    value_gain: float = TINY_IP_VALUE_GAIN,
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


# Copied from generator_service.families.stable_diffusion.to_eval_mode
def to_eval_mode(pipe) -> None:
    # modules built from configs start in training mode (T5 dropout would make outputs random)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def build_tiny_pipeline() -> StableDiffusion3Pipeline:
    pipe = StableDiffusion3Pipeline(**tiny_components())
    pipe.load_ip_adapter(random_ip_adapter_state_dict(pipe.transformer), low_cpu_mem_usage=False)
    to_eval_mode(pipe)
    return pipe


# ---------------------------------------------------------------------------------------------
# real weights
# ---------------------------------------------------------------------------------------------


def build_pipeline(spec: ModelSpec) -> StableDiffusion3Pipeline:
    """SD3.5 weights + SigLIP so400m + InstantX IP-Adapter, per the diffusers docs.

    ``spec.image_encoder`` is the SigLIP repo (``google/siglip-so400m-patch14-384``); the adapter's
    diffusers-format file is ``ip-adapter_diffusers.safetensors`` in InstantX/SD3.5-Large-IP-Adapter.
    """
    dtype = DTYPES[spec.dtype]
    extra = {}
    if spec.image_encoder and spec.options.get("load_image_encoder", True):
        extra["image_encoder"] = SiglipVisionModel.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or "", dtype=dtype
        )
        extra["feature_extractor"] = SiglipImageProcessor.from_pretrained(
            spec.image_encoder, subfolder=spec.image_encoder_subfolder or ""
        )
    pipe = StableDiffusion3Pipeline.from_pretrained(spec.source, dtype=dtype, revision=spec.revision, **extra)
    if not spec.adapter:
        raise ValueError(f"model {spec.key!r}: an IP-Adapter (`adapter`) is required for reference conditioning")
    pipe.load_ip_adapter(
        spec.adapter,
        weight_name=spec.adapter_weight_name or "ip-adapter_diffusers.safetensors",
        subfolder=spec.adapter_subfolder,
        image_encoder_folder=None if extra or not spec.options.get("load_image_encoder", True) else "image_encoder",
    )
    return pipe


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class StableDiffusion3Generator:
    family = FAMILY

    def __init__(self, spec: ModelSpec, pipe: StableDiffusion3Pipeline, device: str):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.device = device
        if spec.max_references > 1:
            raise ValueError(f"model {spec.key!r}: SD3 IP-Adapter takes one reference; set max_references = 1")
        self.max_references = spec.max_references
        if spec.source == "tiny":
            self.image_encoder_id = "tiny-sd3/siglip#hidden_states[-2]"
        else:
            self.image_encoder_id = f"{spec.image_encoder or spec.adapter + '/image_encoder'}#hidden_states[-2]"
        self.size_multiple = max(spec.size_multiple, pipe.vae_scale_factor * pipe.patch_size)
        self.max_sequence_length = int(
            spec.options.get("max_sequence_length", TINY_MAX_SEQUENCE_LENGTH if spec.source == "tiny" else 256)
        )
        self.pipe.set_progress_bar_config(disable=True)

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
                f"model {self.key!r} accepts at most {self.max_references} reference image"
                f"{'s' if self.max_references != 1 else ''}, got {count}"
            )

    @torch.no_grad()
    def encode_references(self, images: list[Image.Image]) -> torch.Tensor:
        """SigLIP ``hidden_states[-2]`` per image: ``(2, k, tokens, dim)``, zeros (negative) first."""
        if not images:
            raise ValueError("encode_references needs at least one image")
        if self.pipe.image_encoder is None:
            raise ValueError(f"model {self.key!r} was loaded without an image encoder; pass embeddings")
        positive = self.pipe.encode_image(list(images), self.pipe._execution_device)
        return torch.stack([torch.zeros_like(positive), positive]).float().cpu()

    def _embeds_tensor(self, reference_embeds) -> torch.Tensor:
        if not isinstance(reference_embeds, torch.Tensor) or reference_embeds.ndim != 4 or reference_embeds.shape[0] != 2:
            raise ValueError("reference_embeds must be a (2, k, tokens, dim) tensor from encode_references")
        return reference_embeds

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        do_cfg = inputs.guidance > 1.0
        conditioning: dict = {}
        if inputs.reference_embeds is not None:
            embeds = self._embeds_tensor(inputs.reference_embeds)[:, 0]
            embeds = embeds.to(device=pipe._execution_device, dtype=pipe.transformer.dtype)
            conditioning["ip_adapter_image_embeds"] = embeds if do_cfg else embeds[1:]
            scale = inputs.ip_scale
        elif inputs.references:
            conditioning["ip_adapter_image"] = inputs.references[0]
            scale = inputs.ip_scale
        else:
            scale = 0.0  # no image: the processors run their plain joint attention
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
            max_sequence_length=self.max_sequence_length,
            callback_on_step_end=on_step_end,
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> StableDiffusion3Generator:
    device = resolve_device(device)
    if spec.source == "tiny":
        pipe = build_tiny_pipeline()
        pipe.to(device)
    else:
        pipe = build_pipeline(spec)
        if spec.offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif spec.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
    return StableDiffusion3Generator(spec, pipe, device)
