"""Metrics and their intervals: identity accuracy, KID, FID (bias-corrected FID∞ and FID at N),
CLIP-T, CLIP-I, and prompt-level bootstrap intervals (paired across arms).

Method (also written into every report, ``INTERVAL_METHOD``):

* The unit that repeats is the **prompt**: a bootstrap replicate draws prompts with replacement and
  every image of a drawn prompt moves with it (weights = how often its prompt was drawn). Real
  photos are resampled within their class, so the target keeps the prompt set's classes. All arms
  share each replicate's draws, so differences between arms are paired.
* **KID** is the unbiased MMD² (polynomial kernel ``(x·y/d + 1)³``, as KID) over *all* images: a
  U-statistic. A replicate evaluates the same U-statistic on the weighted resample, leaving out the
  pairs of an image with its own copies, so replicates stay on the point estimate's (unbiased)
  footing; its interval is the plain percentile interval.
* **FID** is biased upward at small N (Chong & Forsyth 2020), and resampling with replacement adds
  that bias again (duplicates shrink the effective sample). ``fid`` is **FID∞**: FID computed on
  random subsets of fractions f of both sides, fitted linearly against 1/f and extrapolated to
  1/f → 0; ``fid_n`` is the usual FID at the full N. Their intervals take the bootstrap's spread
  around its median and place it at the point estimate (``point + q - median(q)``), so the point
  lies inside by construction; the text says so.
* Accuracy (the evaluator's top-1 on the true object, averaged per prompt then over prompts: every
  prompt has the same number of seeds), CLIP-T and CLIP-I are means; percentile intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

METRICS = ("accuracy", "kid", "fid", "fid_n", "clip_t", "clip_i")
LOWER_IS_BETTER = {"fid": True, "fid_n": True, "kid": True, "clip_t": False, "clip_i": False, "accuracy": False}
# metrics whose resamples are biased: interval = bootstrap spread placed at the point estimate
SHIFTED = {"fid", "fid_n"}

INTERVAL_METHOD = (
    "Intervals: prompt-level percentile bootstrap (a replicate draws prompts with replacement and all images of a "
    "prompt move together; real photos are resampled within their class; every arm uses the same draws, so "
    "differences are paired). KID is the unbiased MMD² over all images, and each replicate evaluates the same "
    "U-statistic without self-pairs of duplicated images, so its percentile interval is on the point estimate's "
    "footing. FID is biased upward at small N: `FID∞` extrapolates FID on random subsets (fractions 0.5-1 of both "
    "sides) linearly in 1/N to 1/N → 0 (Chong & Forsyth 2020); `FID@N` is the usual FID. FID intervals are the "
    "bootstrap's spread around its median placed at the point estimate (resampling with replacement biases FID "
    "upward again), so the point lies inside by construction. Accuracy = the evaluator's top-1 on the true object, "
    "mean over prompts (the headline identity metric)."
)


def poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel (Bińkowski et al. 2018): (a·b / d + 1)³."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def weighted_mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, w: np.ndarray, v: np.ndarray) -> float:
    """Unbiased MMD² with integer frequency weights (w: fake, v: real): pairs of an item with itself
    (including with its own bootstrap copies) are left out. All-ones weights: the usual U-statistic."""
    def within(k: np.ndarray, u: np.ndarray) -> float:
        pairs = u.sum() ** 2 - (u**2).sum()
        return float((u @ k @ u - (u**2 * np.diag(k)).sum()) / pairs) if pairs > 0 else float("nan")

    return within(kxx, w) + within(kyy, v) - 2.0 * float(w @ kxy @ v) / float(w.sum() * v.sum())


def kid(real: np.ndarray, fake: np.ndarray) -> float:
    """KID over all images (no subsets): the unbiased MMD² estimate."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    return weighted_mmd2(poly_kernel(fake, fake), poly_kernel(real, real), poly_kernel(fake, real),
                         np.ones(len(fake)), np.ones(len(real)))


def _moments(x: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance; w = integer frequency weights (the same as repeating rows)."""
    if w is None:
        return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    mu = (w @ x) / w.sum()
    centred = x - mu
    return mu, (centred * w[:, None]).T @ centred / (w.sum() - 1)


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, sqrt_cov1: np.ndarray | None = None) -> float:
    """‖μ1-μ2‖² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½), with tr (Σ1Σ2)^½ = Σ √eig(Σ1^½ Σ2 Σ1^½) (symmetric, stable)."""
    s1 = _sqrt_psd(cov1) if sqrt_cov1 is None else sqrt_cov1
    eig = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    mu_r, cov_r = _moments(real)
    mu_f, cov_f = _moments(fake)
    return frechet(mu_r, cov_r, mu_f, cov_f)


def fid_infinity(real: np.ndarray, fake: np.ndarray, fractions=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0), draws: int = 3,
                 seed: int = 0) -> tuple[float, list[tuple[float, float]]]:
    """FID∞ (Chong & Forsyth 2020): FID on random subsets holding a fraction f of both sides (without
    replacement), fitted as FID(f) = FID∞ + b/f and extrapolated to 1/f → 0. Returns FID∞ and the
    (1/f, mean FID) points of the fit."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    rng = np.random.default_rng(seed)
    points = []
    for f in fractions:
        n_f, n_r = max(2, round(f * len(fake))), max(2, round(f * len(real)))
        runs = 1 if n_f == len(fake) and n_r == len(real) else draws
        values = [fid(real[rng.choice(len(real), n_r, replace=False)], fake[rng.choice(len(fake), n_f, replace=False)])
                  for _ in range(runs)]
        points.append((len(fake) / n_f, float(np.mean(values))))
    x, y = np.array(points).T
    if len(set(x.tolist())) < 2:
        return float(y[-1]), points
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), points


@dataclass
class ArmScores:
    """Everything measured on one arm's generated images of one prompt set (prompt-major order)."""

    fake_features: torch.Tensor | np.ndarray  # (N, d)
    clip_t: np.ndarray  # (N,)
    clip_i: np.ndarray  # (N,)
    correct: np.ndarray  # (N,) bool: the classifier names the true object
    extra: dict = field(default_factory=dict)


def clip_scores(gen_emb: np.ndarray, prompt_emb: np.ndarray, class_real_emb: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """CLIP-T: cos(prompt, image). CLIP-I: mean cos(image, each real image of its class)."""
    clip_t = np.sum(gen_emb * prompt_emb, axis=1)
    clip_i = np.array([float(np.mean(reals @ g)) for g, reals in zip(gen_emb, class_real_emb, strict=True)])
    return clip_t, clip_i


def prompt_weights(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One prompt-level bootstrap draw as per-image weights: prompts drawn with replacement, each
    image weighted by how often its prompt was drawn (a prompt's images move together)."""
    labels, index = np.unique(groups, return_inverse=True)
    counts = np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels))
    return counts[index].astype(np.float64)


def stratified_weights(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images resampled with replacement within their group (class): per-image frequency weights."""
    w = np.zeros(len(groups))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        np.add.at(w, rng.choice(members, len(members)), 1.0)
    return w


class _Arm:
    """One arm's precomputed pieces: kernels and features, evaluated for any weights."""

    def __init__(self, real: np.ndarray, kyy: np.ndarray, s: ArmScores):
        self.fake = np.asarray(s.fake_features, np.float64)
        self.kxx, self.kxy = poly_kernel(self.fake, self.fake), poly_kernel(self.fake, real)
        self.kyy = kyy
        self.s = s

    def values(self, w: np.ndarray, v: np.ndarray, real_moments) -> dict[str, float]:
        mu_r, cov_r, sqrt_r = real_moments
        mu_f, cov_f = _moments(self.fake, w)
        mean = lambda x: float(w @ np.asarray(x, np.float64) / w.sum())  # noqa: E731
        return {"accuracy": mean(self.s.correct), "kid": weighted_mmd2(self.kxx, self.kyy, self.kxy, w, v),
                "fid_n": frechet(mu_r, cov_r, mu_f, cov_f, sqrt_r), "clip_t": mean(self.s.clip_t),
                "clip_i": mean(self.s.clip_i)}


def percentile_interval(values, confidence: float) -> list[float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]


def interval(metric: str, point: float, values, confidence: float) -> list[float]:
    """Percentile interval; for FID (SHIFTED) the spread around the median, placed at the point."""
    lo, hi = percentile_interval(values, confidence)
    if metric in SHIFTED:
        med = float(np.nanmedian(values)) if len(values) else float("nan")
        return [point + lo - med, point + hi - med]
    return [lo, hi]


def summarize_set(real_features, arms: dict[str, ArmScores], n_bootstrap: int = 200, confidence: float = 0.95,
                  seed: int = 0, pairs: list[tuple[str, str]] | None = None, groups=None, real_groups=None) -> dict:
    """Point estimates, prompt-level bootstrap intervals per arm, and paired intervals of differences (a - b).

    ``groups``: the prompt of each generated image (default: every image its own prompt);
    ``real_groups``: the class of each real image (default: one class)."""
    n = {len(s.clip_t) for s in arms.values()}
    if len(n) != 1:
        raise ValueError("every arm must have the same number of generated images (same prompts and seeds)")
    n_fake = n.pop()
    real = np.asarray(real_features, np.float64)
    groups = np.arange(n_fake) if groups is None else np.asarray(groups)
    real_groups = np.zeros(len(real), int) if real_groups is None else np.asarray(real_groups)
    if len(groups) != n_fake or len(real_groups) != len(real):
        raise ValueError("groups must name one prompt per generated image and real_groups one class per real image")
    kyy = poly_kernel(real, real)
    prepared = {a: _Arm(real, kyy, s) for a, s in arms.items()}
    ones, ones_r = np.ones(n_fake), np.ones(len(real))
    mu_r, cov_r = _moments(real)
    full_real = (mu_r, cov_r, _sqrt_psd(cov_r))
    points, fits = {}, {}
    for a, arm in prepared.items():
        points[a] = arm.values(ones, ones_r, full_real)
        points[a]["fid"], fits[a] = fid_infinity(real, arm.fake, seed=seed)

    rng = np.random.default_rng(seed)
    boots: dict[str, dict[str, list[float]]] = {a: {m: [] for m in METRICS if m != "fid"} for a in arms}
    for _ in range(n_bootstrap):
        w, v = prompt_weights(groups, rng), stratified_weights(real_groups, rng)
        mu, cov = _moments(real, v)
        moments = (mu, cov, _sqrt_psd(cov))
        for a, arm in prepared.items():
            for m, value in arm.values(w, v, moments).items():
                boots[a][m].append(value)
    for a in arms:
        boots[a]["fid"] = boots[a]["fid_n"]  # FID∞'s interval: FID's bootstrap spread, placed at FID∞

    out = {a: {**{m: points[a][m] for m in METRICS}, "fid_fit": fits[a],
               "ci": {m: interval(m, points[a][m], boots[a][m], confidence) for m in METRICS},
               "n": n_fake, "prompts": len(np.unique(groups))} for a in arms}
    deltas = {}
    for a, b in pairs or []:
        if a in arms and b in arms:
            deltas[f"{a} - {b}"] = {
                m: {"delta": points[a][m] - points[b][m],
                    "ci": interval(m, points[a][m] - points[b][m], np.array(boots[a][m]) - np.array(boots[b][m]), confidence)}
                for m in METRICS}
    return {"arms": out, "deltas": deltas, "n_real": len(real), "bootstrap": n_bootstrap, "confidence": confidence,
            "resampling": "prompts (images of a prompt together); real photos within their class", "method": INTERVAL_METHOD}


def reference_sensitivity(features: np.ndarray, predicted: list[str], true_cls: list[str], wrong_cls: list[str | None],
                          centroids: dict[str, np.ndarray]) -> dict[str, float | None]:
    """For outputs of one conditioning: identity accuracy on the true object, cosine distance of each
    output's features to the true object's real-photo centroid, and the share that show the wrong
    reference's object (the classifier names it; None where no output had a wrong reference)."""
    feats = np.asarray(features, np.float64)
    if not len(feats):
        return {"n": 0, "accuracy": None, "distance": None, "wrong_shown": None}
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    cents = np.stack([centroids[c] / max(float(np.linalg.norm(centroids[c])), 1e-12) for c in true_cls])
    wrong = [(p == w) for p, w in zip(predicted, wrong_cls, strict=True) if w is not None]
    return {"n": len(feats), "accuracy": float(np.mean([p == c for p, c in zip(predicted, true_cls, strict=True)])),
            "distance": float(np.mean(1.0 - np.sum(unit * cents, axis=1))),
            "wrong_shown": float(np.mean(wrong)) if wrong else None}


def retrieval_recall(ranked_classes: list[list[str]], targets: list[str], ks=(1, 5)) -> dict[str, float]:
    """recall@k: share of queries whose top-k retrieved images contain an image of the target class."""
    out = {}
    for k in ks:
        hits = [t in r[:k] for r, t in zip(ranked_classes, targets, strict=True)]
        out[f"recall@{k}"] = float(np.mean(hits)) if hits else float("nan")
    return out
