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
from diffusers import FluxPipeline, FluxPriorReduxPipeline
from PIL import Image

from generator_service.families.base import GenerationInputs
from generator_service.families.common import auto_device, load_kwargs, match_dtype, place_pipeline, step_callback
from services.registry import ModelSpec

FAMILY = "flux"

DEFAULT_TRUE_CFG = 4.0
DEFAULT_MAX_SEQUENCE_LENGTH = 512  # T5 tokens of the prompt


def build_pipeline(spec: ModelSpec, device: str) -> tuple[FluxPipeline, FluxPriorReduxPipeline | None]:
    """FLUX.1 weights + the XLabs IP-Adapter with CLIP ViT-L/14, or the Redux prior."""
    kwargs = load_kwargs(spec, device)
    dtype = kwargs["dtype"]
    pipe = FluxPipeline.from_pretrained(spec.source, **kwargs)
    if spec.options.get("redux"):
        redux = FluxPriorReduxPipeline.from_pretrained(spec.options["redux"], **{**kwargs, "revision": None})
        match_dtype(redux, dtype, components=("image_encoder", "image_embedder"))
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
    match_dtype(pipe, dtype)
    return pipe, None


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class FluxGenerator:
    family = FAMILY

    def __init__(
        self,
        spec: ModelSpec,
        pipe: FluxPipeline,
        redux: FluxPriorReduxPipeline | None,
        device: str,
        max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    ):
        self.key = spec.key
        self.spec = spec
        self.pipe = pipe
        self.redux = redux
        self.device = device
        self.max_references = spec.max_references
        self.true_cfg_scale = float(spec.options.get("true_cfg_scale", DEFAULT_TRUE_CFG))
        self.max_sequence_length = int(spec.options.get("max_sequence_length", max_sequence_length))
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

    def _redux_kwargs(self, redux: FluxPriorReduxPipeline, inputs: GenerationInputs, negative_prompt: str | None) -> dict:
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
            image_states = redux.encode_image(list(inputs.references), redux._execution_device, 1)
        else:
            image_states = None
        if image_states is not None:
            embedder = redux.image_embedder
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
            conditioning = self._redux_kwargs(self.redux, inputs, negative_prompt)
        else:
            conditioning, scale = self._ip_adapter_kwargs(inputs)
            pipe.set_ip_adapter_scale(scale)
            conditioning.update(prompt=inputs.prompt, negative_prompt=negative_prompt)

        result = pipe(
            height=inputs.height,
            width=inputs.width,
            num_inference_steps=inputs.steps,
            guidance_scale=inputs.guidance,
            true_cfg_scale=self.true_cfg_scale,
            num_images_per_prompt=len(inputs.seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in inputs.seeds],
            max_sequence_length=self.max_sequence_length,
            callback_on_step_end=step_callback(inputs.on_step),
            output_type="pil",
            **conditioning,
        )
        return list(result.images)


def load(spec: ModelSpec, device: str | None = None) -> FluxGenerator:
    device = auto_device(device)
    max_sequence_length = DEFAULT_MAX_SEQUENCE_LENGTH
    if spec.source == "tiny":
        from generator_service.tiny import flux as tiny

        pipe, redux = tiny.build_pipeline(redux=bool(spec.options.get("redux")))
        max_sequence_length = tiny.MAX_SEQUENCE_LENGTH
    else:
        pipe, redux = build_pipeline(spec, device)
    for pipeline in (pipe, redux):
        if pipeline is not None:
            place_pipeline(pipeline, spec.offload, device)
    return FluxGenerator(spec, pipe, redux, device, max_sequence_length)
