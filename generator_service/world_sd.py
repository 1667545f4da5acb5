"""The world-sd model: configuration, components (text and reference encoders, a UNet with
decoupled reference cross-attention) and the sampling pipeline. It plays for the ``world`` family the
part diffusers plays for the others; the family module (``generator_service.families.world``)
serves it, ``realrag.world.train_generator`` trains it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn as nn
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection
from PIL import Image

WEIGHTS_FILE = "world-sd.safetensors"
CONFIG_FILE = "config.json"



@dataclass
class WorldSDConfig:
    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    attention_heads: int = 4  # UNet2DConditionModel's `attention_head_dim` is, historically, the head count
    norm_num_groups: int = 16
    ref_width: int = 32
    ref_embed_dim: int = 256
    ref_tokens: int = 4
    text_vocab: int = 4096
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    context_length: int = 24
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    training: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Self:
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


class WorldTextEncoder(nn.Module):
    """open_clip BPE ids folded into ``text_vocab`` buckets -> a small ``CLIPTextModel`` -> per-token states."""

    def __init__(self, cfg: WorldSDConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        self.vocab = cfg.text_vocab
        self.context_length = cfg.context_length
        self.width = cfg.text_width
        self.model = CLIPTextModel(CLIPTextConfig(
            vocab_size=cfg.text_vocab, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
            num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.context_length, bos_token_id=0, eos_token_id=1, pad_token_id=1))

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        import open_clip

        return open_clip.tokenize(prompts, context_length=self.context_length) % self.vocab

    def forward(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenize(prompts).to(self.model.device)
        return self.model(input_ids=ids).last_hidden_state


def build_unet(cfg: WorldSDConfig, in_channels: int = 3) -> UNet2DConditionModel:
    """The UNet with decoupled (IP-Adapter) cross-attention wired exactly as ``load_ip_adapter`` does.
    ``in_channels`` > 3: extra input channels concatenated to the noisy image (v2: the reference photo)."""
    n = len(cfg.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size,
        in_channels=in_channels,
        out_channels=3,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.attention_heads,
        norm_num_groups=cfg.norm_num_groups,
        # unCLIP-style: the reference embedding also joins the timestep embedding (every ResNet block)
        class_embed_type="projection",
        projection_class_embeddings_input_dim=cfg.ref_embed_dim,
    )
    cross_attention_dim = cfg.text_width
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

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "cpu") -> WorldSDPipeline:
        from safetensors.torch import load_file

        path = Path(path)
        cfg = WorldSDConfig.from_json((path / CONFIG_FILE).read_text())
        unet, ref_encoder, text_encoder = build_unet(cfg), ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim), WorldTextEncoder(cfg)
        state = {k: v.float() for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
        for prefix, module in (("unet.", unet), ("ref_encoder.", ref_encoder), ("text_encoder.", text_encoder)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return cls(cfg, unet, ref_encoder, text_encoder, device)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(self.cfg.to_json())
        state = {}
        for prefix, module in (("unet.", self.unet), ("ref_encoder.", self.ref_encoder), ("text_encoder.", self.text_encoder)):
            state.update({f"{prefix}{k}": v for k, v in module.state_dict().items()})
        # fp16 on disk halves the committed size; load() reads it back into fp32 modules
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, str(path / WEIGHTS_FILE))
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
        return self._denoise(noise, text, uncond_text, ref, steps, guidance, ref_scale, on_step)

    def _denoise(self, noise: torch.Tensor, text: torch.Tensor, uncond_text: torch.Tensor, ref: torch.Tensor,
                 steps: int, guidance: float, ref_scale: float, on_step=None) -> torch.Tensor:
        """The sampling loop: classifier-free guidance over (no text, no reference) vs (text, reference)."""
        set_reference_scale(self.unet, ref_scale)
        use_cfg = guidance != 1.0
        enc = torch.cat([uncond_text, text]) if use_cfg else text
        refs = torch.cat([torch.zeros_like(ref), ref]) if use_cfg else ref
        global_ref = refs.mean(dim=1) * ref_scale  # several references: their mean

        scheduler = sample_scheduler(self.cfg)
        scheduler.set_timesteps(steps)
        x = noise * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            model_in = torch.cat([x, x]) if use_cfg else x
            out = self.unet(model_in, t, encoder_hidden_states=enc, class_labels=global_ref,
                            added_cond_kwargs={"image_embeds": [refs]}).sample
            if use_cfg:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            x = scheduler.step(out, t, x).prev_sample
            if on_step is not None:
                on_step(i + 1, steps)
        return (x / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def sample_many(self, prompts: list[str], references: list[Image.Image | None], seeds: list[int],
                    steps: int = 25, guidance: float = 3.0, ref_scale: float = 1.0) -> torch.Tensor:
        """One image per row (prompt, reference or None, seed), all rows in one batch: what an
        evaluation needs (many prompts, each with its own reference). Same guidance as ``__call__``."""
        if not (len(prompts) == len(references) == len(seeds)) or not seeds:
            raise ValueError("prompts, references and seeds must be non-empty and of equal length")
        n, size = len(seeds), self.cfg.image_size
        noise = torch.stack([
            torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]).to(self.device)
        text = self.text_encoder(list(prompts))
        uncond_text = self.text_encoder([""]).expand(n, -1, -1)
        ref = torch.cat([self.encode_references([r] if r is not None else []) for r in references])
        return self._denoise(noise, text, uncond_text, ref, steps, guidance, ref_scale)

    @torch.no_grad()
    def reference_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """The reference encoder's embedding per image (v1: the pooled embedding the UNet sees)."""
        return self.ref_encoder(images_to_tensor(images, self.cfg.image_size).to(self.device))


def load_pipeline(path: str | Path, device: str = "cpu") -> WorldSDPipeline:
    """A saved world-sd directory, v1 or v2 by ``config.json``'s ``version`` (absent: v1, the committed assets)."""
    version = json.loads((Path(path) / CONFIG_FILE).read_text()).get("version", 1)
    if version == 1:
        return WorldSDPipeline.from_dir(path, device)
    if version == 2:
        from generator_service.world_sd_v2 import WorldSDv2Pipeline

        return WorldSDv2Pipeline.from_dir(path, device)
    raise ValueError(f"{path}: unknown world-sd version {version!r}")
