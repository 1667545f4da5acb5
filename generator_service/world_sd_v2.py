"""world-sd v2: the world generator that follows its reference.

Same UNet, text encoder and DDIM sampler as v1 (``generator_service.world_sd``); what changes is the
reference pathway and the guidance:

* ``SpatialReferenceEncoder`` keeps v1's CNN but returns its *spatial* feature maps (8x8 and 4x4,
  80 tokens) besides the pooled embedding, so colour, pattern and parts survive; an identity head
  (trained with InfoNCE on two photos of the same object) makes near-duplicates separable.
* the tokens go through a small perceiver resampler (``IPAdapterPlusImageProjection``, the
  IP-Adapter Plus projection) into ``ref_tokens`` tokens for the decoupled cross-attention; the
  pooled embedding still joins the timestep embedding, as in v1.
* the reference photo itself is concatenated to the noisy image as three more input channels
  (InstructPix2Pix's image conditioning; zeros = no reference). World photos keep the object near
  the centre at a similar scale, so the UNet can carry colour, pattern and parts across directly;
  with several references the first (best-ranked) one is concatenated, all of them are attended to.
* two-way classifier-free guidance (InstructPix2Pix style) with separate reference and text weights:
  ``e(0,0) + w_ref (e(0,r) - e(0,0)) + w_text (e(t,r) - e(0,r))``; the reference weight defaults
  above the text weight so a retrieved photo can override what an unfamiliar name suggests.
* with a reference, sampling starts from the reference photo noised to ``ref_init_strength`` of the
  schedule (SDEdit, as diffusers' img2img pipelines do) instead of pure noise. The learned pathway
  alone carries colour but not yet shape and pattern after a CPU-sized fine-tune (generic prompt +
  true reference: 0.30 evaluator accuracy from noise, 0.44 from the noised photo at 0.6; see
  docs/results/novel-objects.md); the seed still varies pose details, background and texture.

A v2 directory is told apart by ``"version": 2`` in its ``config.json``;
``generator_service.world_sd.load_pipeline`` picks the class, so v1 assets load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection, MultiIPAdapterImageProjection
from PIL import Image

from generator_service.world_sd import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    WorldSDConfig,
    WorldSDPipeline,
    WorldTextEncoder,
    build_unet,
    images_to_tensor,
    sample_scheduler,
    set_reference_scale,
)


@dataclass
class WorldSDv2Config(WorldSDConfig):
    version: int = 2
    ref_tokens: int = 16  # resampler queries (v1: 4 tokens from one pooled vector)
    resampler_depth: int = 2
    resampler_heads: int = 4
    id_dim: int = 128  # identity head (InfoNCE) output
    ref_guidance: float = 5.0  # two-way guidance: reference weight (the text weight is the call's `guidance`)
    reference_channels: int = 3  # the reference photo concatenated to the UNet input (0: tokens only)
    # with a reference, sampling starts from the reference photo noised to this fraction of the schedule
    # (SDEdit); 1.0 = from pure noise
    ref_init_strength: float = 0.6


class SpatialReferenceEncoder(nn.Module):
    """Photo -> (pooled embedding (B, ref_embed_dim), spatial tokens (B, 80, 4*width)).

    ``net`` and ``proj`` have v1's ``ReferenceEncoder`` shapes, so v1 weights warm-start them."""

    def __init__(self, width: int = 32, embed_dim: int = 256, id_dim: int = 128):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.net = nn.Sequential(block(3, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2),
                                 block(4 * width, 4 * width, 2), block(4 * width, 4 * width, 1))
        self.proj = nn.Linear(8 * width, embed_dim)
        self.token_dim = 4 * width
        self.pos = nn.Parameter(torch.zeros(1, 64 + 16, self.token_dim))  # 8x8 + 4x4 positions at 32 px
        self.id_head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, id_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, H, W) in [0, 1]."""
        h = (x - 0.5) / 0.25
        maps = []
        for i, layer in enumerate(self.net):
            h = layer(h)
            if i in (2, 4):
                maps.append(h)
        pooled = self.proj(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))
        tokens = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
        if tokens.shape[1] == self.pos.shape[1]:
            tokens = tokens + self.pos
        return pooled, tokens

    def identity(self, pooled: torch.Tensor) -> torch.Tensor:
        """L2-normalised identity embedding (what InfoNCE trains; 1-NN same-object is measured on it)."""
        return F.normalize(self.id_head(pooled), dim=-1)


def build_unet_v2(cfg: WorldSDv2Config) -> UNet2DConditionModel:
    """v1's UNet (plus the reference photo's input channels) with the reference projection replaced by a
    perceiver resampler over spatial tokens."""
    unet = build_unet(cfg, in_channels=3 + cfg.reference_channels)
    token_dim = 4 * cfg.ref_width
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([IPAdapterPlusImageProjection(
        embed_dims=token_dim, output_dims=cfg.text_width, hidden_dims=token_dim, depth=cfg.resampler_depth,
        dim_head=token_dim // cfg.resampler_heads, heads=cfg.resampler_heads, num_queries=cfg.ref_tokens, ffn_ratio=2)])
    return unet


def build_components(cfg: WorldSDv2Config) -> tuple[UNet2DConditionModel, SpatialReferenceEncoder, WorldTextEncoder]:
    return build_unet_v2(cfg), SpatialReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim, cfg.id_dim), WorldTextEncoder(cfg)


def unet_input(x: torch.Tensor, ref_image: torch.Tensor, cfg: WorldSDv2Config) -> torch.Tensor:
    """The noisy image with the reference photo (in [-1, 1]; zeros = none) as extra channels."""
    return torch.cat([x, ref_image], dim=1) if cfg.reference_channels else x


def unet_kwargs(text: torch.Tensor, pooled: torch.Tensor, tokens: torch.Tensor) -> dict:
    """UNet conditioning: text states, pooled reference (timestep embedding), tokens (decoupled attention).
    ``tokens`` is (B, k, n, d) for k references."""
    return {"encoder_hidden_states": text, "class_labels": pooled, "added_cond_kwargs": {"image_embeds": [tokens]}}


class WorldSDv2Pipeline(WorldSDPipeline):
    cfg: WorldSDv2Config

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "cpu") -> WorldSDv2Pipeline:
        from safetensors.torch import load_file

        path = Path(path)
        cfg = WorldSDv2Config.from_json((path / CONFIG_FILE).read_text())
        unet, ref_encoder, text_encoder = build_components(cfg)
        state = {k: v.float() for k, v in load_file(str(path / WEIGHTS_FILE)).items()}
        for prefix, module in (("unet.", unet), ("ref_encoder.", ref_encoder), ("text_encoder.", text_encoder)):
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return cls(cfg, unet, ref_encoder, text_encoder, device)

    @torch.no_grad()
    def encode_references(self, references: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """(pooled (1, ref_embed_dim), tokens (1, k, n, d), photo (1, 3, H, W) in [-1, 1]); zeros stand for
        "no reference" (as trained). Several references: pooled embeddings are averaged, token sets are
        concatenated, the first photo is the one concatenated to the UNet input."""
        n_tok, dim, size = 64 + 16, self.ref_encoder.token_dim, self.cfg.image_size
        if not references:
            return (torch.zeros(1, self.cfg.ref_embed_dim, device=self.device),
                    torch.zeros(1, 1, n_tok, dim, device=self.device),
                    torch.zeros(1, 3, size, size, device=self.device))
        x = images_to_tensor(references, size).to(self.device)
        pooled, tokens = self.ref_encoder(x)
        return pooled.mean(0, keepdim=True), tokens.unsqueeze(0), x[:1] * 2 - 1

    @torch.no_grad()
    def identity_embeddings(self, images: list[Image.Image], batch: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch):
            x = images_to_tensor(images[i:i + batch], self.cfg.image_size).to(self.device)
            out.append(self.ref_encoder.identity(self.ref_encoder(x)[0]))
        return torch.cat(out)

    @torch.no_grad()
    def reference_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """Identity embeddings (L2-normalised), one per image: what separates near-duplicates."""
        x = images_to_tensor(images, self.cfg.image_size).to(self.device)
        return self.ref_encoder.identity(self.ref_encoder(x)[0])

    @torch.no_grad()
    def __call__(self, prompt: str, seeds: list[int], references: list[Image.Image] | None = None,
                 steps: int = 25, guidance: float = 3.0, ref_scale: float = 1.0, on_step=None,
                 negative_prompt: str | None = None, ref_guidance: float | None = None) -> torch.Tensor:
        if not seeds:
            raise ValueError("at least one seed is required")
        pooled, tokens, photo = self.encode_references(references or [])
        return self._sample([prompt] * len(seeds), pooled, tokens, photo, bool(references), seeds, steps, guidance,
                            ref_scale, ref_guidance, negative_prompt, on_step)

    @torch.no_grad()
    def sample_many(self, prompts: list[str], references: list[Image.Image | None], seeds: list[int],
                    steps: int = 25, guidance: float = 3.0, ref_scale: float = 1.0,
                    ref_guidance: float | None = None) -> torch.Tensor:
        """One image per row (prompt, reference or None, seed), all rows in one batch. Rows without a
        reference get plain text guidance (their reference-only branch equals the unconditional one)."""
        if not (len(prompts) == len(references) == len(seeds)) or not seeds:
            raise ValueError("prompts, references and seeds must be non-empty and of equal length")
        enc = [self.encode_references([r] if r is not None else []) for r in references]
        pooled, tokens, photo = (torch.cat([e[i] for e in enc]) for i in range(3))
        has = [r is not None for r in references]
        if self.cfg.ref_init_strength < 1.0 and any(has) and not all(has):  # rows start at different steps
            out = torch.empty(len(seeds), 3, self.cfg.image_size, self.cfg.image_size, device=self.device)
            for flag in (True, False):
                idx = [i for i, h in enumerate(has) if h is flag]
                out[idx] = self._sample([prompts[i] for i in idx], pooled[idx], tokens[idx], photo[idx], flag,
                                        [seeds[i] for i in idx], steps, guidance, ref_scale, ref_guidance)
            return out
        return self._sample(list(prompts), pooled, tokens, photo, any(has), seeds, steps, guidance, ref_scale, ref_guidance)

    def _sample(self, prompts: list[str], pooled: torch.Tensor, tokens: torch.Tensor, photo: torch.Tensor, has_ref: bool,
                seeds: list[int], steps: int, guidance: float, ref_scale: float, ref_guidance: float | None,
                negative_prompt: str | None = None, on_step=None) -> torch.Tensor:
        if steps < 1:
            raise ValueError("steps must be >= 1")
        w_ref = self.cfg.ref_guidance if ref_guidance is None else ref_guidance
        n, size = len(seeds), self.cfg.image_size
        noise = torch.stack([
            torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds
        ]).to(self.device)
        text = self.text_encoder(prompts)
        uncond_text = self.text_encoder([negative_prompt or ""]).expand(n, -1, -1)
        pooled, tokens = pooled.expand(n, -1) * ref_scale, tokens.expand(n, -1, -1, -1)
        start_photo = photo.expand(n, -1, -1, -1)
        photo = start_photo * ref_scale
        null = (torch.zeros_like(pooled), torch.zeros_like(tokens), torch.zeros_like(photo))
        set_reference_scale(self.unet, ref_scale)
        # branches, in order: (text, ref) always; (no text, ref) and (no text, no ref) as guidance needs
        branches = [(text, pooled, tokens, photo)]
        if (has_ref and w_ref != 1.0) or guidance != 1.0:
            if has_ref:
                branches.append((uncond_text, pooled, tokens, photo))
            branches.append((uncond_text, *null))
        enc, pool, toks, photos = (torch.cat([b[i] for b in branches]) for i in range(4))

        scheduler = sample_scheduler(self.cfg)
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        x = noise * scheduler.init_noise_sigma
        # ref_scale 0 turns the reference off: no SDEdit start either
        skip = int(round(steps * (1 - self.cfg.ref_init_strength))) if has_ref and ref_scale > 0 else 0
        if skip:  # SDEdit: the reference photo, noised to where sampling starts
            timesteps = timesteps[min(skip, steps - 1):]
            x = scheduler.add_noise(start_photo, noise, timesteps[:1].repeat(n))
        for i, t in enumerate(timesteps):
            model_in = unet_input(torch.cat([x] * len(branches)), photos, self.cfg)
            out = self.unet(model_in, t, **unet_kwargs(enc, pool, toks)).sample.chunk(len(branches))
            if len(branches) == 1:
                pred = out[0]
            elif has_ref:  # e(0,0) + w_ref (e(0,r) - e(0,0)) + w_text (e(t,r) - e(0,r))
                full, ref_only, uncond = out
                pred = uncond + w_ref * (ref_only - uncond) + guidance * (full - ref_only)
            else:
                full, uncond = out
                pred = uncond + guidance * (full - uncond)
            x = scheduler.step(pred, t, x).prev_sample
            if on_step is not None:
                on_step(i + 1, len(timesteps))
        return (x / 2 + 0.5).clamp(0, 1)
