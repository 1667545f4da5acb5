"""Flux.1 with the XLabs IP-Adapter (CLIP ViT-L/14) and true CFG, or Flux Redux as an option.

IP-Adapter mode (default): the k references go into one call as ``ip_adapter_image=[[r1..rk]]``
(``(1, k, 768)`` CLIP-L ``image_embeds``); under true CFG (``true_cfg_scale > 1`` plus a negative
prompt, two transformer passes per step) the negative side is a black image, as the pipeline
synthesises it. ``inputs.guidance`` is Flux-dev's distilled guidance; ``options.true_cfg_scale``
(default 4.0, XLabs' recommendation) sets true CFG.

Redux mode (``options.redux = <FLUX.1-Redux-dev repo>``, or ``"tiny"``): the references go through
the Redux prior (SigLIP ``last_hidden_state`` -> ``ReduxImageEncoder``) and their image tokens are
appended after the T5 prompt tokens. This does ``FluxPriorReduxPipeline.__call__``'s arithmetic with
the prompt kept: diffusers sums the k references' tokens scaled by ``prompt_embeds_scale``, and here
the scale is ``ip_scale / k`` on the image tokens only, so the text is never scaled away
(diffusers#11642: ``prompt_embeds_scale`` scales text and image together).

Reference embeddings use the shared layout ``(2, k, *per_image)``, negative half first (IP mode:
the black image's embedding; Redux: zeros, unused).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxPriorReduxPipeline,
    FluxTransformer2DModel,
)
from diffusers.models.embeddings import ImageProjection
from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor
from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
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

FAMILY = "flux"

TINY_JOINT_DIM = 32  # T5 width
TINY_POOLED_DIM = 32  # CLIP text width
TINY_VISION_HIDDEN = 32
TINY_VISION_IMAGE_SIZE = 32
TINY_IMAGE_EMBED_DIM = 16  # CLIP-L projection (768 in the real encoder)
TINY_IP_VALUE_GAIN = 3.0
TINY_MAX_SEQUENCE_LENGTH = 128
DEFAULT_TRUE_CFG = 4.0

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# Copied from generator_service.families.stable_diffusion.resolve_device
def resolve_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# Copied from generator_service.families.stable_diffusion.to_eval_mode
def to_eval_mode(pipe) -> None:
    # modules built from configs start in training mode (T5 dropout would make outputs random)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


# ---------------------------------------------------------------------------------------------
# tiny twin
# ---------------------------------------------------------------------------------------------


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
        joint_attention_dim=TINY_JOINT_DIM,
        pooled_projection_dim=TINY_POOLED_DIM,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # as FLUX.1-dev
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=CLIP_BOS_ID,
            eos_token_id=CLIP_EOS_ID,
            pad_token_id=CLIP_EOS_ID,
            hidden_size=TINY_POOLED_DIM,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=CLIP_VOCAB_SIZE,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=TINY_POOLED_DIM,
        )
    )
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=BYTE_VOCAB_SIZE,
            d_model=TINY_JOINT_DIM,
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
    # FLUX.1-dev's scheduler config (resolution-dependent shift)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=TINY_VISION_HIDDEN,
            image_size=TINY_VISION_IMAGE_SIZE,
            patch_size=8,
            projection_dim=TINY_IMAGE_EMBED_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    feature_extractor = CLIPImageProcessor(
        crop_size=TINY_VISION_IMAGE_SIZE,
        size=TINY_VISION_IMAGE_SIZE,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        resample=3,
    )
    return {
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": byte_level_tokenizer(TINY_MAX_SEQUENCE_LENGTH),
        "transformer": transformer,
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
    }


def random_ip_adapter_state_dict(
    transformer: FluxTransformer2DModel, image_embed_dim: int, value_gain: float = TINY_IP_VALUE_GAIN
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


def build_tiny_redux() -> FluxPriorReduxPipeline:
    torch.manual_seed(0)
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=TINY_VISION_HIDDEN,
            image_size=TINY_VISION_IMAGE_SIZE,
            patch_size=8,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    torch.manual_seed(0)
    embedder = ReduxImageEncoder(redux_dim=TINY_VISION_HIDDEN, txt_in_features=TINY_JOINT_DIM)
    processor = SiglipImageProcessor(size={"height": TINY_VISION_IMAGE_SIZE, "width": TINY_VISION_IMAGE_SIZE})
    redux = FluxPriorReduxPipeline(image_encoder=image_encoder, feature_extractor=processor, image_embedder=embedder)
    to_eval_mode(redux)
    return redux


def build_tiny_pipeline(redux: bool) -> tuple[FluxPipeline, FluxPriorReduxPipeline | None]:
    components = tiny_components()
    if redux:
        components["image_encoder"] = components["feature_extractor"] = None
        pipe = FluxPipeline(**components)
        to_eval_mode(pipe)
        return pipe, build_tiny_redux()
    pipe = FluxPipeline(**components)
    state_dict = random_ip_adapter_state_dict(pipe.transformer, TINY_IMAGE_EMBED_DIM)
    pipe.load_ip_adapter(
        state_dict, weight_name="", image_encoder_pretrained_model_name_or_path=None, low_cpu_mem_usage=False
    )
    to_eval_mode(pipe)
    return pipe, None


# ---------------------------------------------------------------------------------------------
# real weights
# ---------------------------------------------------------------------------------------------


def build_pipeline(spec: ModelSpec) -> tuple[FluxPipeline, FluxPriorReduxPipeline | None]:
    """FLUX.1 weights + the XLabs IP-Adapter with CLIP ViT-L/14, or the Redux prior."""
    dtype = DTYPES[spec.dtype]
    pipe = FluxPipeline.from_pretrained(spec.source, dtype=dtype, revision=spec.revision)
    if spec.options.get("redux"):
        redux = FluxPriorReduxPipeline.from_pretrained(spec.options["redux"], dtype=dtype)
        return pipe, redux
    if not spec.adapter:
        raise ValueError(f"model {spec.key!r}: set `adapter` (XLabs IP-Adapter) or options.redux")
    load_encoder = spec.options.get("load_image_encoder", True)
    pipe.load_ip_adapter(
        spec.adapter,
        weight_name=spec.adapter_weight_name or "ip_adapter.safetensors",
        subfolder=spec.adapter_subfolder or "",
        image_encoder_pretrained_model_name_or_path=(spec.image_encoder or "openai/clip-vit-large-patch14")
        if load_encoder
        else None,
        image_encoder_subfolder=spec.image_encoder_subfolder or "",
        image_encoder_dtype=dtype,
    )
    return pipe, None


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class FluxGenerator:
    family = FAMILY

    def __init__(self, spec: ModelSpec, pipe: FluxPipeline, redux: FluxPriorReduxPipeline | None, device: str):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.redux = redux
        self.device = device
        self.max_references = spec.max_references
        self.true_cfg_scale = float(spec.options.get("true_cfg_scale", DEFAULT_TRUE_CFG))
        self.max_sequence_length = int(
            spec.options.get("max_sequence_length", TINY_MAX_SEQUENCE_LENGTH if spec.source == "tiny" else 512)
        )
        self.size_multiple = max(spec.size_multiple, pipe.vae_scale_factor * 2)
        if spec.source == "tiny":
            self.image_encoder_id = "tiny-flux/siglip#last_hidden_state" if redux else "tiny-flux/clip-vision#image_embeds"
        elif redux is not None:
            self.image_encoder_id = f"{spec.options['redux']}/image_encoder#last_hidden_state"
        else:
            self.image_encoder_id = f"{spec.image_encoder or 'openai/clip-vit-large-patch14'}#image_embeds"
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
        """``(2, k, *per_image)``: negative (black image / zeros for Redux) first, then the references."""
        if not images:
            raise ValueError("encode_references needs at least one image")
        if self.redux is not None:
            positive = self.redux.encode_image(list(images), self.redux._execution_device, 1)
            return torch.stack([torch.zeros_like(positive), positive]).float().cpu()
        if self.pipe.image_encoder is None:
            raise ValueError(f"model {self.key!r} was loaded without an image encoder; pass embeddings")
        device = self.pipe._execution_device
        positive = self.pipe.encode_image(list(images), device, 1)
        # the same black image FluxPipeline synthesises as the negative reference
        black = self.pipe.encode_image(np.zeros((64, 64, 3), dtype=np.uint8), device, 1)
        return torch.stack([black.expand_as(positive), positive]).float().cpu()

    def _embeds_tensor(self, reference_embeds) -> torch.Tensor:
        if not isinstance(reference_embeds, torch.Tensor) or reference_embeds.ndim < 3 or reference_embeds.shape[0] != 2:
            raise ValueError("reference_embeds must be a (2, k, ...) tensor from encode_references")
        return reference_embeds

    # -- generation -----------------------------------------------------------------------

    def _ip_adapter_kwargs(self, inputs: GenerationInputs) -> tuple[dict, float]:
        pipe = self.pipe
        dtype = pipe.transformer.dtype
        device = pipe._execution_device
        if inputs.reference_embeds is not None:
            embeds = self._embeds_tensor(inputs.reference_embeds).to(device=device, dtype=dtype)
            return {
                "ip_adapter_image_embeds": [embeds[1:2]],
                "negative_ip_adapter_image_embeds": [embeds[0:1, :1]],
            }, inputs.ip_scale
        if inputs.references:
            return {"ip_adapter_image": [list(inputs.references)]}, inputs.ip_scale
        # the XLabs processors need image tokens on every call: one zero slot, switched off by scale 0
        width = pipe.transformer.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features
        zeros = torch.zeros(1, 1, width, device=device, dtype=dtype)
        return {"ip_adapter_image_embeds": [zeros], "negative_ip_adapter_image_embeds": [zeros]}, 0.0

    def _redux_kwargs(self, inputs: GenerationInputs, negative_prompt: str | None) -> dict:
        pipe = self.pipe
        device = pipe._execution_device
        prompt_embeds, pooled, _ = pipe.encode_prompt(
            prompt=inputs.prompt, prompt_2=None, device=device, max_sequence_length=self.max_sequence_length
        )
        kwargs = {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}
        image_tokens = None
        if inputs.ip_scale == 0:
            image_states = None  # scale 0 means no image tokens at all, as with no references
        elif inputs.reference_embeds is not None:
            image_states = self._embeds_tensor(inputs.reference_embeds)[1]
        elif inputs.references:
            image_states = self.redux.encode_image(list(inputs.references), self.redux._execution_device, 1)
        else:
            image_states = None
        if image_states is not None:
            embedder = self.redux.image_embedder
            tokens = embedder(image_states.to(device=device, dtype=embedder.dtype)).image_embeds
            image_tokens = (tokens * (inputs.ip_scale / tokens.shape[0])).sum(dim=0, keepdim=True)
            kwargs["prompt_embeds"] = torch.cat([prompt_embeds, image_tokens.to(prompt_embeds.dtype)], dim=1)
        if negative_prompt is not None and self.true_cfg_scale > 1:
            negative, negative_pooled, _ = pipe.encode_prompt(
                prompt=negative_prompt, prompt_2=None, device=device, max_sequence_length=self.max_sequence_length
            )
            if image_tokens is not None:
                negative = torch.cat([negative, torch.zeros_like(image_tokens, dtype=negative.dtype)], dim=1)
            kwargs["negative_prompt_embeds"] = negative
            kwargs["negative_pooled_prompt_embeds"] = negative_pooled
        return kwargs

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        # true CFG needs a negative prompt; "" is the XLabs / diffusers recommendation
        negative_prompt = inputs.negative_prompt if inputs.negative_prompt is not None else ""
        if self.redux is not None:
            conditioning = self._redux_kwargs(inputs, negative_prompt)
        else:
            conditioning, scale = self._ip_adapter_kwargs(inputs)
            pipe.set_ip_adapter_scale(scale)
            conditioning.update(prompt=inputs.prompt, negative_prompt=negative_prompt)

        def on_step_end(pipeline, step_index, timestep, callback_kwargs):
            if inputs.on_step is not None:
                inputs.on_step(step_index + 1, pipeline.num_timesteps)
            return callback_kwargs

        result = pipe(
            height=inputs.height,
            width=inputs.width,
            num_inference_steps=inputs.steps,
            guidance_scale=inputs.guidance,
            true_cfg_scale=self.true_cfg_scale,
            num_images_per_prompt=len(inputs.seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
            max_sequence_length=self.max_sequence_length,
            callback_on_step_end=on_step_end,
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> FluxGenerator:
    device = resolve_device(device)
    if spec.source == "tiny":
        pipe, redux = build_tiny_pipeline(redux=bool(spec.options.get("redux")))
    else:
        pipe, redux = build_pipeline(spec)
    for pipeline in (pipe, redux):
        if pipeline is None:
            continue
        if spec.offload == "model":
            pipeline.enable_model_cpu_offload(device=device)
        elif spec.offload == "sequential":
            pipeline.enable_sequential_cpu_offload(device=device)
        else:
            pipeline.to(device)
    return FluxGenerator(spec, pipe, redux, device)
