"""OmniGen v1: references go into the prompt itself, no adapter and no image encoder.

Each reference becomes ``<img><|image_i|></img>`` in the instruction and is VAE-encoded into
(H/16)*(W/16) tokens of the same sequence (``input_images=[r1..rk]``). The prompt follows ImageRAG:
"According to these images of {label_1}: <img><|image_1|></img>, {label_2}: ..., generate {prompt}",
with the labels from ``inputs.reference_labels``.

* ``ip_scale`` has no OmniGen counterpart; 0 means "don't show the references" (plain text-to-image),
  any other value conditions on them. Reference strength is ``options.img_guidance_scale`` (1.6).
* ``options.max_input_image_size`` (512, the docs' advice for retrieved references) caps the tokens
  per reference: 512 -> 1,024 tokens; 1024 -> 4,096 and ~40 GB with two references.
* OmniGen's loop never checks ``_interrupt``, so cancel works only by raising from the step callback.
* OmniGen encodes the references with ``latent_dist.sample()`` on the global RNG; the call runs
  under a forked RNG seeded with 0 so outputs depend only on the per-image seeds.
* Needs torchvision (diffusers' ``OmniGenMultiModalProcessor``).
* There are no reference embeddings to cache (``image_encoder_id`` is None).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, OmniGenPipeline, OmniGenTransformer2DModel
from PIL import Image

from generator_service.families.base import GenerationInputs
from generator_service.tiny.tokenizers import BYTE_PAD_ID, BYTE_VOCAB_SIZE, byte_level_tokenizer
from services.registry import ModelSpec

FAMILY = "omnigen"

DEFAULT_IMG_GUIDANCE = 1.6
DEFAULT_MAX_INPUT_IMAGE_SIZE = 512
REFERENCE_ENCODING_SEED = 0
TINY_ATTENTION_GAIN = 4.0
TINY_INPUT_IMAGE_GAIN = 10.0

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


def rag_prompt(prompt: str, labels: list[str | None]) -> str:
    """ImageRAG's OmniGen instruction for len(labels) references (placeholders numbered from 1)."""
    if not labels:
        return prompt
    parts = []
    for index, label in enumerate(labels, start=1):
        placeholder = f"<img><|image_{index}|></img>"
        parts.append(f"{label}: {placeholder}" if label else placeholder)
    return f"According to these images of {', '.join(parts)}, generate {prompt}"


# ---------------------------------------------------------------------------------------------
# tiny twin
# ---------------------------------------------------------------------------------------------


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
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(4, 8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(invert_sigmas=True, num_train_timesteps=1),
        "tokenizer": byte_level_tokenizer(4096, add_bos=True, add_eos=False),
    }


def build_tiny_pipeline() -> OmniGenPipeline:
    pipe = OmniGenPipeline(**tiny_components())
    # At default init the tiny transformer's attention is nearly uniform over ~100 byte tokens, so the
    # reference tokens barely move the output; sharper attention and louder image tokens fix that.
    with torch.no_grad():
        for layer in pipe.transformer.layers:
            layer.self_attn.to_q.weight.mul_(TINY_ATTENTION_GAIN)
            layer.self_attn.to_k.weight.mul_(TINY_ATTENTION_GAIN)
            layer.self_attn.to_v.weight.mul_(TINY_ATTENTION_GAIN)
        pipe.transformer.patch_embedding.input_image_proj.weight.mul_(TINY_INPUT_IMAGE_GAIN)
    to_eval_mode(pipe)
    return pipe


def build_pipeline(spec: ModelSpec) -> OmniGenPipeline:
    """``Shitao/OmniGen-v1-diffusers`` (or a local copy)."""
    return OmniGenPipeline.from_pretrained(spec.source, dtype=DTYPES[spec.dtype], revision=spec.revision)


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class _WithNegativePrompt:
    """OmniGenPipeline.__call__ has no ``negative_prompt``; its processor does. Forward one."""

    def __init__(self, processor, negative_prompt: str):
        self._processor = processor
        self._negative_prompt = negative_prompt

    def __call__(self, *args, **kwargs):
        return self._processor(*args, negative_prompt=self._negative_prompt, **kwargs)

    def __getattr__(self, name):
        return getattr(self._processor, name)


class OmniGenGenerator:
    family = FAMILY
    image_encoder_id = None  # references are VAE-encoded inside the call; nothing to cache

    def __init__(self, spec: ModelSpec, pipe: OmniGenPipeline, device: str):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.device = device
        self.max_references = spec.max_references
        self.img_guidance_scale = float(spec.options.get("img_guidance_scale", DEFAULT_IMG_GUIDANCE))
        self.max_input_image_size = int(spec.options.get("max_input_image_size", DEFAULT_MAX_INPUT_IMAGE_SIZE))
        self.size_multiple = max(spec.size_multiple, pipe.vae_scale_factor * 2)
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
        if inputs.reference_embeds is not None:
            raise ValueError(f"model {self.key!r} (OmniGen) conditions on images, not precomputed embeddings")
        if len(inputs.references) > self.max_references:
            raise ValueError(
                f"model {self.key!r} accepts at most {self.max_references} reference images, "
                f"got {len(inputs.references)}"
            )
        if inputs.reference_labels and len(inputs.reference_labels) != len(inputs.references):
            raise ValueError(
                f"reference_labels has {len(inputs.reference_labels)} entries for {len(inputs.references)} references"
            )
        if "<|image_" in inputs.prompt:
            raise ValueError("the prompt may not contain OmniGen image placeholders (<|image_i|>)")

    def encode_references(self, images: list[Image.Image]):
        raise NotImplementedError("OmniGen has no image encoder; pass the reference images")

    @torch.no_grad()
    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        self.check_inputs(inputs)
        pipe = self.pipe
        references = list(inputs.references) if inputs.ip_scale != 0 else []
        labels = list(inputs.reference_labels) if inputs.reference_labels else [None] * len(references)
        prompt = rag_prompt(inputs.prompt, labels[: len(references)])

        def on_step_end(pipeline, step_index, timestep, callback_kwargs):
            if inputs.on_step is not None:
                inputs.on_step(step_index + 1, pipeline.num_timesteps)
            return callback_kwargs

        processor = pipe.multimodal_processor
        if inputs.negative_prompt is not None:
            pipe.multimodal_processor = _WithNegativePrompt(processor, inputs.negative_prompt)
        devices = [pipe._execution_device] if pipe._execution_device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(REFERENCE_ENCODING_SEED)
                result = pipe(
                    prompt=prompt,
                    input_images=references or None,
                    height=inputs.height,
                    width=inputs.width,
                    num_inference_steps=inputs.steps,
                    guidance_scale=inputs.guidance,
                    img_guidance_scale=self.img_guidance_scale,
                    max_input_image_size=self.max_input_image_size,
                    num_images_per_prompt=len(inputs.seeds),
                    generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
                    callback_on_step_end=on_step_end,
                    output_type="pil",
                )
        finally:
            pipe.multimodal_processor = processor
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> OmniGenGenerator:
    device = resolve_device(device)
    pipe = build_tiny_pipeline() if spec.source == "tiny" else build_pipeline(spec)
    if spec.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif spec.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    return OmniGenGenerator(spec, pipe, device)
