import warnings

import numpy as np
import pytest
import torch
from scipy import linalg
from torchmetrics.image.kid import KernelInceptionDistance

from realrag.evaluation.features import FeatureSpecError, build_classifier, build_feature_space
from realrag.evaluation.metrics import (
    METRICS,
    ArmScores,
    clip_scores,
    fid,
    fid_infinity,
    kid,
    prompt_weights,
    reference_sensitivity,
    retrieval_recall,
    stratified_weights,
    summarize_set,
)


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_and_kid_match_the_reference_formulas_and_order_distributions():
    rng = np.random.default_rng(0)
    real, near, far = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.1, rng.normal(size=(300, 8)) + 1.0
    assert fid(real, near) == pytest.approx(_frechet(real, near), rel=1e-6, abs=1e-6)
    assert fid(real, far) == pytest.approx(_frechet(real, far), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = KernelInceptionDistance(feature=_Identity(), subset_size=300, subsets=1, normalize=True)
    reference.update(torch.from_numpy(real), real=True)
    reference.update(torch.from_numpy(far), real=False)
    assert kid(real, far) == pytest.approx(float(reference.compute()[0]), rel=1e-9)  # one subset = all images
    assert kid(real, near) < kid(real, far) and fid(real, near) < fid(real, far)


class _Identity(torch.nn.Module):
    num_features = 8

    def forward(self, x):
        return x


def test_kid_is_unbiased_on_two_samples_of_one_distribution():
    rng = np.random.default_rng(1)
    values = [kid(rng.normal(size=(60, 16)), rng.normal(size=(60, 16))) for _ in range(40)]
    shifted = kid(rng.normal(size=(60, 16)), rng.normal(size=(60, 16)) + 0.5)
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))  # mean ≈ 0 within its error
    assert min(values) < 0 < max(values)  # an unbiased estimate of 0 goes both ways
    assert shifted > 10 * np.std(values)
    # FID at small N is biased upward; FID∞ removes most of it
    a, b = rng.normal(size=(150, 16)), rng.normal(size=(150, 16)) + 0.3
    true_fid = 16 * 0.3**2
    assert abs(fid_infinity(a, b)[0] - true_fid) < 0.5 * (fid(a, b) - true_fid)


def _grouped(rng, prompts, seeds, shift=0.0, prompt_effect=1.0, p_correct=0.5):
    """Images whose features and correctness share a per-prompt effect (seeds of a prompt are alike)."""
    effect = np.repeat(rng.normal(size=(prompts, 4)) * prompt_effect, seeds, axis=0)
    feats = effect + rng.normal(size=(prompts * seeds, 4)) * 0.5 + shift
    correct = np.repeat(rng.random(prompts) < p_correct, seeds)
    return ArmScores(feats, np.full(len(feats), 0.3), np.full(len(feats), 0.5), correct)


def test_prompt_resampling_moves_a_prompts_images_together():
    groups = np.repeat(np.arange(7), 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = prompt_weights(groups, rng)
        assert w.sum() == len(groups)
        for g in range(7):
            assert len(set(w[groups == g])) == 1  # all seeds of a prompt drawn the same number of times
    real_groups = np.repeat(np.arange(4), 5)
    v = stratified_weights(real_groups, rng)
    assert all(v[real_groups == g].sum() == 5 for g in range(4))  # real photos stay within their class


def test_points_lie_inside_their_intervals_and_paired_deltas_separate_real_differences():
    rng = np.random.default_rng(2)
    prompts, seeds = 20, 4
    real = rng.normal(size=(100, 4)) * 1.1
    good, bad = _grouped(rng, prompts, seeds, p_correct=0.8), _grouped(rng, prompts, seeds, shift=2.0, p_correct=0.1)
    groups = np.repeat(np.arange(prompts), seeds)
    out = summarize_set(real, {"reflective": good, "no_rag": bad}, n_bootstrap=100, groups=groups,
                        real_groups=np.repeat(np.arange(20), 5), pairs=[("reflective", "no_rag")])
    for arm in out["arms"].values():
        assert arm["prompts"] == prompts and arm["n"] == prompts * seeds
        for m in METRICS:
            lo, hi = arm["ci"][m]
            assert lo <= arm[m] <= hi, (m, arm[m], lo, hi)
    d = out["deltas"]["reflective - no_rag"]
    for m in METRICS:
        assert d[m]["ci"][0] <= d[m]["delta"] <= d[m]["ci"][1], m
    assert d["fid"]["ci"][1] < 0 and d["kid"]["ci"][1] < 0 and d["accuracy"]["ci"][0] > 0
    assert "prompt" in out["method"] and "FID∞" in out["method"]
    with pytest.raises(ValueError, match="same number"):
        summarize_set(real, {"a": good, "b": ArmScores(good.fake_features[:10], good.clip_t[:10], good.clip_i[:10],
                                                         good.correct[:10])}, n_bootstrap=2)


def test_resampling_prompts_not_images_widens_intervals_when_seeds_of_a_prompt_agree():
    rng = np.random.default_rng(3)
    prompts, seeds = 24, 6
    arm = _grouped(rng, prompts, seeds)
    real = rng.normal(size=(60, 4))
    by_prompt = summarize_set(real, {"a": arm}, n_bootstrap=150, groups=np.repeat(np.arange(prompts), seeds))
    by_image = summarize_set(real, {"a": arm}, n_bootstrap=150)
    width = {k: np.diff(v["arms"]["a"]["ci"]["accuracy"])[0] for k, v in (("prompt", by_prompt), ("image", by_image))}
    assert width["prompt"] > 1.5 * width["image"]


def test_reference_sensitivity_fields_are_in_range():
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = reference_sensitivity(feats, ["a", "b", "b"], ["a", "a", "a"], [None, "b", "c"],
                                {"a": np.array([2.0, 0.0])})
    assert out["n"] == 3 and out["accuracy"] == pytest.approx(1 / 3)
    assert out["wrong_shown"] == pytest.approx(0.5)  # of the two outputs that had a wrong reference, one shows it
    assert 0 <= out["distance"] <= 2 and out["distance"] == pytest.approx((0 + 1 + (1 - 2**-0.5)) / 3)
    assert reference_sensitivity(feats[:1], ["a"], ["a"], [None], {"a": np.ones(2)})["wrong_shown"] is None


def test_clip_scores_and_recall():
    gen = np.array([[1.0, 0.0], [0.0, 1.0]])
    prompts = np.array([[1.0, 0.0], [1.0, 0.0]])
    reals = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0]])]
    t, i = clip_scores(gen, prompts, reals)
    assert t.tolist() == [1.0, 0.0] and i.tolist() == [0.5, 1.0]
    r = retrieval_recall([["a", "b"], ["c", "b"], ["c", "c"]], ["a", "b", "b"], ks=(1, 2))
    assert r == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(2 / 3)}


def test_feature_space_specs_fail_clearly(tmp_path):
    with pytest.raises(FeatureSpecError, match="weights by path"):
        build_feature_space("inception")
    with pytest.raises(FeatureSpecError, match="not found"):
        build_feature_space(f"inception:{tmp_path / 'missing.pth'}")
    with pytest.raises(FeatureSpecError, match="not found"):
        build_feature_space(f"world-evaluator:{tmp_path / 'missing.safetensors'}")
    with pytest.raises(FeatureSpecError, match="unknown feature space"):
        build_feature_space("vgg")
    with pytest.raises(FeatureSpecError, match="unknown classifier"):
        build_classifier("resnet", ["a"], {"a": "a"})


def test_world_evaluator_space_and_classifier(tiny_setup):
    from PIL import Image

    world = tiny_setup.world
    space = build_feature_space(f"world-evaluator:{tiny_setup.evaluator}")
    assert "world-evaluator" in space.name and space.num_features == 128
    images = [Image.open(p) for p in sorted((world.split_dir("test") / world.classes[0].slug).glob("*.png"))]
    assert space.extract(images).shape == (len(images), 128)
    slugs = [c.slug for c in world.classes]
    clf = build_classifier(f"world-evaluator:{tiny_setup.evaluator}", slugs, {s: s for s in slugs})
    assert set(clf.predict(images)) <= set(slugs)
    with pytest.raises(FeatureSpecError, match="does not know classes"):
        build_classifier(f"world-evaluator:{tiny_setup.evaluator}", ["someone-else"], {"someone-else": "x"})


def test_committed_results_name_no_machine_directories(tmp_path):
    from realrag.evaluation.report import relative_paths

    setup = {"corpus": f"{tmp_path}/world/corpus", "arms": [f"clip:{tmp_path}/m.safetensors + x"], "n": 3}
    assert relative_paths(setup, tmp_path) == {"corpus": "world/corpus", "arms": ["clip:m.safetensors + x"], "n": 3}
