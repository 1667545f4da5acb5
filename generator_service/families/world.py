"""world-sd: a small pixel-space text + reference diffusion model of the synthetic world.

Built from diffusers components: a ``UNet2DConditionModel`` whose cross-attention is IP-Adapter-style
*decoupled* (``IPAdapterAttnProcessor2_0``: separate key/value projections for reference tokens,
added to the text attention), an ``ImageProjection`` that turns a reference embedding into
``ref_tokens`` tokens (the UNet's ``encoder_hid_proj``, as ``load_ip_adapter`` sets it up), the same
embedding added to the timestep embedding (``class_embed_type="projection"``, as unCLIP conditions on
image embeddings), a ``DDIMScheduler``; a small ``transformers.CLIPTextModel`` text encoder (per-token states, as Stable
Diffusion uses CLIP) and a small CNN reference encoder, both trained with the UNet.

Everything in it was trained on *seen* objects only (``realrag/world/train_generator.py``): the
text encoder has never read an unseen object's name, the UNet has never drawn one. The reference is
another photo of the same object, dropped at random, so the model works with or without one;
classifier-free guidance drops both text and reference. Text uses open_clip's BPE tokenizer with
ids folded into ``text_vocab`` buckets (a closed world needs no 49k-row embedding table).

A directory whose ``config.json`` says ``"version": 2`` loads world-sd v2 (``generator_service.world_sd_v2``:
the reference photo as extra input channels, spatial reference tokens through a resampler, two-way
guidance; the committed assets); without it, v1.

``source`` is a directory with ``config.json`` + ``world-sd.safetensors`` (resolved as given, then
relative to the repository root), or ``"tiny"``: the tiny twin (``generator_service.tiny.world``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from generator_service.families.base import GenerationInputs
from generator_service.families.common import auto_device
from generator_service.world_sd import CONFIG_FILE, WEIGHTS_FILE, WorldSDPipeline, load_pipeline, tensor_to_images
from services.registry import ModelSpec

FAMILY = "world"

_REPO_ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# generator protocol
# ---------------------------------------------------------------------------------------------


def _resolve_relative(value: str, base_dir: Path | None) -> Path:
    p = Path(value)
    candidates = [p] if p.is_absolute() else [p, *([base_dir / p] if base_dir else []), _REPO_ROOT / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise FileNotFoundError(f"{value!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def resolve_source(source: str) -> Path:
    """A world-sd directory: as given (absolute or relative to the working directory) or relative to
    the repository root, where the packaged spec points (``realrag/world/assets/world-sd``)."""
    path = _resolve_relative(source, None)
    if not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a world-sd directory (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                                "train it with `python -m realrag.world train-generator`")
    return path


class WorldGenerator:
    family = FAMILY
    image_encoder_id = None  # the reference encoder is internal; nothing to cache across models

    def __init__(self, spec: ModelSpec, pipeline: WorldSDPipeline):
        self.key = spec.key
        self.spec = spec
        self.max_references = spec.max_references
        self.pipeline = pipeline
        self._lock = threading.Lock()

    @property
    def native_size(self) -> int:
        return self.pipeline.cfg.image_size

    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        size = self.native_size
        if inputs.width != inputs.height or inputs.width % size:
            raise ValueError(f"{self.key} renders {size}x{size} images; width and height must be equal multiples of "
                             f"{size} (larger sizes are upscaled), got {inputs.width}x{inputs.height}")
        if len(inputs.references) > self.max_references:
            raise ValueError(f"{self.key} takes at most {self.max_references} reference image(s), "
                             f"got {len(inputs.references)}")
        refs = list(inputs.references)
        with self._lock:
            out = self.pipeline(inputs.prompt, inputs.seeds, refs, steps=inputs.steps, guidance=inputs.guidance,
                                ref_scale=inputs.ip_scale, on_step=inputs.on_step,
                                negative_prompt=inputs.negative_prompt)
        images = tensor_to_images(out)
        if inputs.width != size:
            images = [im.resize((inputs.width, inputs.height), Image.Resampling.BICUBIC) for im in images]
        return images


def load(spec: ModelSpec, device: str | None = "cpu") -> WorldGenerator:
    device = auto_device(device)
    if spec.source == "tiny":
        from generator_service.tiny import world as tiny

        pipeline = tiny.build_pipeline(device)
    else:
        pipeline = load_pipeline(resolve_source(spec.source), device)
    return WorldGenerator(spec, pipeline)
