"""world-sd: a small pixel-space text + reference diffusion model of the synthetic world.

Built from diffusers components: a ``UNet2DConditionModel`` whose cross-attention is IP-Adapter-style
*decoupled* (``IPAdapterAttnProcessor2_0``: separate key/value projections for reference tokens,
added to the text attention), an ``ImageProjection`` that turns a reference embedding into
``ref_tokens`` tokens (the UNet's ``encoder_hid_proj``, as ``load_ip_adapter`` sets it up), a
``DDIMScheduler``; plus the frozen text tower of the world CLIP as text encoder (per-token states,
as Stable Diffusion uses CLIP) and a small CNN reference encoder trained with the UNet.

It was trained on the *seen* classes only (``services/world/train_generator.py``) with the
reference being another photo of the same object, dropped at random, so it works with or without
a reference; classifier-free guidance drops both text and reference.

``source`` is a directory with ``config.json`` + ``world-sd.safetensors`` (resolved as given, then
relative to the repository and to ``services/world/assets``), or ``"tiny"``: the same classes with
small random weights, seeded, for tests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection
from PIL import Image

from generator_service.families.base import GenerationInputs, JobCanceled  # noqa: F401  (re-export)
from generator_service.registry import ModelSpec

FAMILY = "world"
WEIGHTS_FILE = "world-sd.safetensors"
CONFIG_FILE = "config.json"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_WORLD_ASSETS = _REPO_ROOT / "services" / "world" / "assets"


@dataclass
class WorldSDConfig:
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    ref_width: int = 32
    ref_embed_dim: int = 256
    ref_tokens: int = 4
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    # the frozen text encoder: a world CLIP (open_clip config + weights), paths relative to this file's dir
    clip_config: str = "../world-clip.json"
    clip_weights: str | None = "../world-clip.safetensors"
    training: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "WorldSDConfig":
        d = json.loads(text)
        d["block_out_channels"] = tuple(d["block_out_channels"])
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------


class ReferenceEncoder(nn.Module):
    """Photo of the object -> one embedding; pooled over space, so it keeps identity, not pose."""

    def __init__(self, width: int = 32, embed_dim: int = 256):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.net = nn.Sequential(block(3, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2),
                                 block(4 * width, 4 * width, 2), block(4 * width, 4 * width, 1))
        self.proj = nn.Linear(8 * width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1]."""
        h = self.net((x - 0.5) / 0.25)
        return self.proj(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class ClipTextStates(nn.Module):
    """Per-token hidden states of an open_clip text tower (what SD's UNet cross-attends to)."""

    def __init__(self, clip_model, tokenizer):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.tokenizer = tokenizer
        self.width = self.token_embedding.embedding_dim
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.token_embedding.weight.device)
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask)
        return self.ln_final(x)


def build_text_encoder(cfg: WorldSDConfig, base_dir: Path | None) -> ClipTextStates:
    import open_clip

    config_path = _resolve_relative(cfg.clip_config, base_dir)
    open_clip.add_model_config(config_path)
    name = config_path.stem
    pretrained = None
    if cfg.clip_weights:
        pretrained = str(_resolve_relative(cfg.clip_weights, base_dir))
    else:
        torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=pretrained)
    return ClipTextStates(model.eval(), open_clip.get_tokenizer(name)).eval()


def build_unet(cfg: WorldSDConfig, cross_attention_dim: int) -> UNet2DConditionModel:
    """The UNet with decoupled (IP-Adapter) cross-attention wired exactly as ``load_ip_adapter`` does."""
    n = len(cfg.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
    )
    processors = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            processors[name] = AttnProcessor2_0()
            continue
        if name.startswith("mid_block"):
            hidden = cfg.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(cfg.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = cfg.block_out_channels[int(name[len("down_blocks.")])]
        processors[name] = IPAdapterAttnProcessor2_0(hidden, cross_attention_dim, num_tokens=(cfg.ref_tokens,), scale=1.0)
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(
        [ImageProjection(image_embed_dim=cfg.ref_embed_dim, cross_attention_dim=cross_attention_dim,
                         num_image_text_embeds=cfg.ref_tokens)]
    )
    unet.config.encoder_hid_dim_type = "ip_image_proj"
    return unet


def set_reference_scale(unet: UNet2DConditionModel, scale: float) -> None:
    for proc in unet.attn_processors.values():
        if isinstance(proc, IPAdapterAttnProcessor2_0):
            proc.scale = [scale]


def train_scheduler(cfg: WorldSDConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def sample_scheduler(cfg: WorldSDConfig) -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=True, set_alpha_to_one=True,
                         timestep_spacing="trailing")


def images_to_tensor(images: list[Image.Image], size: int) -> torch.Tensor:
    """PIL images -> (N, 3, size, size) in [0, 1]; non-square images are centre-cropped first."""
    out = []
    for im in images:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if s != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out)


def tensor_to_images(x: torch.Tensor) -> list[Image.Image]:
    arr = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


# ---------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------


class WorldSDPipeline:
    """Text (+ optional reference photo) -> image, pixel space, DDIM with classifier-free guidance."""

    def __init__(self, cfg: WorldSDConfig, unet, ref_encoder, text_encoder, device: str = "cpu"):
        self.cfg = cfg
        self.unet = unet.eval().to(device)
        self.ref_encoder = ref_encoder.eval().to(device)
        self.text_encoder = text_encoder.eval().to(device)
        self.device = device
        self._empty = None

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "cpu") -> "WorldSDPipeline":
        from safetensors.torch import load_file

        path = Path(path)
        cfg = WorldSDConfig.from_json((path / CONFIG_FILE).read_text())
        text_encoder = build_text_encoder(cfg, path)
        unet = build_unet(cfg, text_encoder.width)
        ref_encoder = ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim)
        state = {k: v.float() for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
        unet.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("unet.")})
        ref_encoder.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("ref_encoder.")})
        return cls(cfg, unet, ref_encoder, text_encoder, device)

    @classmethod
    def tiny(cls, device: str = "cpu") -> "WorldSDPipeline":
        cfg = WorldSDConfig(block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8, ref_width=8,
                            ref_embed_dim=16, ref_tokens=2, clip_weights=None, clip_config=str(_WORLD_ASSETS / "world-clip.json"))
        text_encoder = build_text_encoder(cfg, None)
        torch.manual_seed(0)
        unet = build_unet(cfg, text_encoder.width)
        ref_encoder = ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim)
        return cls(cfg, unet, ref_encoder, text_encoder, device)

    def save(self, path: str | Path) -> Path:
        from services.world.training import save_weights

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(self.cfg.to_json())
        state = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        state.update({f"ref_encoder.{k}": v for k, v in self.ref_encoder.state_dict().items()})
        save_weights(state, path / WEIGHTS_FILE)
        return path

    @torch.no_grad()
    def encode_references(self, references: list[Image.Image]) -> torch.Tensor:
        """(1, k, ref_embed_dim) reference embeddings; zeros stand for "no reference" (as trained)."""
        if not references:
            return torch.zeros(1, 1, self.cfg.ref_embed_dim, device=self.device)
        x = images_to_tensor(references, self.cfg.image_size).to(self.device)
        return self.ref_encoder(x).unsqueeze(0)

    @torch.no_grad()
    def __call__(self, prompt: str, seeds: list[int], references: list[Image.Image] | None = None,
                 steps: int = 25, guidance: float = 3.0, ref_scale: float = 1.0, on_step=None,
                 negative_prompt: str | None = None) -> torch.Tensor:
        if not seeds:
            raise ValueError("at least one seed is required")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        n, size = len(seeds), self.cfg.image_size
        noise = torch.stack([
            torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]).to(self.device)
        text = self.text_encoder([prompt]).expand(n, -1, -1)
        uncond_text = self.text_encoder([negative_prompt or ""]).expand(n, -1, -1)
        ref = self.encode_references(references or []).expand(n, -1, -1)
        no_ref = torch.zeros_like(ref)
        set_reference_scale(self.unet, ref_scale)
        use_cfg = guidance != 1.0
        enc = torch.cat([uncond_text, text]) if use_cfg else text
        refs = torch.cat([no_ref, ref]) if use_cfg else ref

        scheduler = sample_scheduler(self.cfg)
        scheduler.set_timesteps(steps)
        x = noise * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            model_in = torch.cat([x, x]) if use_cfg else x
            out = self.unet(model_in, t, encoder_hidden_states=enc, added_cond_kwargs={"image_embeds": [refs]}).sample
            if use_cfg:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            x = scheduler.step(out, t, x).prev_sample
            if on_step is not None:
                on_step(i + 1, steps)
        return (x / 2 + 0.5).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# generator protocol
# ---------------------------------------------------------------------------------------------


def _resolve_relative(value: str, base_dir: Path | None) -> Path:
    p = Path(value)
    candidates = [p] if p.is_absolute() else [p, *( [base_dir / p] if base_dir else []), _REPO_ROOT / p, _WORLD_ASSETS / p.name]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise FileNotFoundError(f"{value!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def resolve_source(source: str) -> Path:
    """A world-sd directory: as given, relative to the repository, or under services/world/assets."""
    path = _resolve_relative(source, None)
    if not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a world-sd directory (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                                "train it with `python -m services.world train-generator`")
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


def load(spec: ModelSpec, device: str = "cpu") -> WorldGenerator:
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.source == "tiny":
        pipeline = WorldSDPipeline.tiny(device)
    else:
        pipeline = WorldSDPipeline.from_dir(resolve_source(spec.source), device)
    return WorldGenerator(spec, pipeline)
