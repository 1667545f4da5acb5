"""Metrics: FID and KID (torchmetrics, on features from a named feature space), CLIP-T, CLIP-I,
object accuracy, and bootstrap confidence intervals (paired across arms).

Features are extracted once; torchmetrics computes FID/KID from them through an identity
"extractor", so the point estimate and every bootstrap replicate use torchmetrics' own formulas.
All arms of a prompt set generate the same (prompt, seed) list in the same order, so one set of
resampling indices serves every arm and differences between arms get paired intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

METRICS = ("fid", "kid", "clip_t", "clip_i", "accuracy")
LOWER_IS_BETTER = {"fid": True, "kid": True, "clip_t": False, "clip_i": False, "accuracy": False}


class _Precomputed(torch.nn.Module):
    """Identity 'feature extractor': the inputs already are features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FeatureDistances:
    """torchmetrics FID + KID over precomputed features."""

    def __init__(self, num_features: int, kid_subset_size: int, kid_subsets: int = 50):
        self.fid = FrechetInceptionDistance(feature=_Precomputed(num_features), normalize=True)
        with warnings.catch_warnings():  # "KID keeps all features in memory": they are small here
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(feature=_Precomputed(num_features), normalize=True,
                                               subset_size=kid_subset_size, subsets=kid_subsets)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> tuple[float, float]:
        self.fid.reset()
        self.kid.reset()
        real, fake = real.double(), fake.double()
        self.fid.update(real, real=True)
        self.fid.update(fake, real=False)
        self.kid.update(real.float(), real=True)
        self.kid.update(fake.float(), real=False)
        fid = float(self.fid.compute())
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # KID draws its subsets from the global RNG
        try:
            kid = float(self.kid.compute()[0])
        finally:
            torch.random.set_rng_state(state)
        return fid, kid


@dataclass
class ArmScores:
    """Everything measured on one arm's generated images of one prompt set."""

    fake_features: torch.Tensor  # (N, d)
    clip_t: np.ndarray  # (N,)
    clip_i: np.ndarray  # (N,)
    correct: np.ndarray  # (N,) bool
    extra: dict = field(default_factory=dict)


def clip_scores(gen_emb: np.ndarray, prompt_emb: np.ndarray, class_real_emb: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """CLIP-T: cos(prompt, image). CLIP-I: mean cos(image, each real image of its class)."""
    clip_t = np.sum(gen_emb * prompt_emb, axis=1)
    clip_i = np.array([float(np.mean(reals @ g)) for g, reals in zip(gen_emb, class_real_emb, strict=True)])
    return clip_t, clip_i


def _point(real: torch.Tensor, s: ArmScores, dist: FeatureDistances, seed: int, idx=None, ridx=None) -> dict[str, float]:
    fake = s.fake_features if idx is None else s.fake_features[idx]
    real = real if ridx is None else real[ridx]
    sel = slice(None) if idx is None else idx
    fid, kid = dist(real, fake, seed)
    return {"fid": fid, "kid": kid, "clip_t": float(np.mean(s.clip_t[sel])), "clip_i": float(np.mean(s.clip_i[sel])),
            "accuracy": float(np.mean(s.correct[sel]))}


def summarize_set(real_features: torch.Tensor, arms: dict[str, ArmScores], n_bootstrap: int = 200,
                  confidence: float = 0.95, seed: int = 0, kid_subsets: int = 50,
                  pairs: list[tuple[str, str]] | None = None) -> dict:
    """Point estimates, percentile bootstrap CIs per arm, and paired CIs of differences (a - b)."""
    names = list(arms)
    n = {len(s.clip_t) for s in arms.values()}
    if len(n) != 1:
        raise ValueError("every arm must have the same number of generated images (same prompts and seeds)")
    n_fake = n.pop()
    n_real = len(real_features)
    subset = max(2, min(100, n_fake, n_real))
    dist = FeatureDistances(real_features.shape[1], subset, kid_subsets)
    points = {a: _point(real_features, s, dist, seed) for a, s in arms.items()}

    rng = np.random.default_rng(seed)
    boots = {a: {m: [] for m in METRICS} for a in names}
    for b in range(n_bootstrap):
        idx = rng.integers(0, n_fake, n_fake)
        ridx = rng.integers(0, n_real, n_real)
        for a, s in arms.items():
            for m, v in _point(real_features, s, dist, seed + b + 1, idx, ridx).items():
                boots[a][m].append(v)
    lo_q, hi_q = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100

    def interval(values) -> list[float]:
        if not len(values):
            return [float("nan"), float("nan")]
        return [float(np.percentile(values, lo_q)), float(np.percentile(values, hi_q))]

    out = {}
    for a in names:
        out[a] = {**points[a], "ci": {m: interval(boots[a][m]) for m in METRICS}, "n": n_fake}
    deltas = {}
    for a, b in pairs or []:
        if a in arms and b in arms:
            deltas[f"{a} - {b}"] = {
                m: {"delta": points[a][m] - points[b][m],
                    "ci": interval(np.array(boots[a][m]) - np.array(boots[b][m]))}
                for m in METRICS
            }
    return {"arms": out, "deltas": deltas, "n_real": n_real, "kid_subset_size": subset,
            "bootstrap": n_bootstrap, "confidence": confidence}


def retrieval_recall(ranked_classes: list[list[str]], targets: list[str], ks=(1, 5)) -> dict[str, float]:
    """recall@k: share of queries whose top-k retrieved images contain an image of the target class."""
    out = {}
    for k in ks:
        hits = [t in r[:k] for r, t in zip(ranked_classes, targets, strict=True)]
        out[f"recall@{k}"] = float(np.mean(hits)) if hits else float("nan")
    return out
