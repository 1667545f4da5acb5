import numpy as np
import pytest
import torch
from scipy import linalg

from realrag.evaluation.features import FeatureSpecError, build_classifier, build_feature_space
from realrag.evaluation.metrics import ArmScores, FeatureDistances, clip_scores, retrieval_recall, summarize_set


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_the_reference_formula_and_orders_distributions():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g, dtype=torch.float64)
    near = torch.randn(300, 8, generator=g, dtype=torch.float64) + 0.1
    far = torch.randn(300, 8, generator=g, dtype=torch.float64) + 1.0
    dist = FeatureDistances(8, kid_subset_size=100)
    fid_near, kid_near = dist(real, near)
    fid_far, kid_far = dist(real, far)
    assert fid_near == pytest.approx(_frechet(real.numpy(), near.numpy()), rel=1e-3, abs=1e-3)
    assert fid_far == pytest.approx(_frechet(real.numpy(), far.numpy()), rel=1e-3)
    assert fid_near < fid_far and kid_near < kid_far
    assert dist(real, far, seed=5) == dist(real, far, seed=5)  # KID subsets are seeded


def _scores(feats, correct):
    n = len(feats)
    return ArmScores(feats, np.full(n, 0.3), np.full(n, 0.5), np.asarray(correct))


def test_summary_has_cis_around_the_point_and_paired_deltas():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(120, 4, generator=g, dtype=torch.float64)
    good = _scores(torch.randn(80, 4, generator=g, dtype=torch.float64), [True] * 60 + [False] * 20)
    bad = _scores(torch.randn(80, 4, generator=g, dtype=torch.float64) + 2, [True] * 10 + [False] * 70)
    out = summarize_set(real, {"reflective": good, "no_rag": bad}, n_bootstrap=50, pairs=[("reflective", "no_rag")])
    for arm in out["arms"].values():
        for m in ("fid", "kid", "accuracy", "clip_t", "clip_i"):
            lo, hi = arm["ci"][m]
            assert lo <= hi
        assert arm["ci"]["accuracy"][0] <= arm["accuracy"] <= arm["ci"]["accuracy"][1]
    assert out["arms"]["reflective"]["accuracy"] == pytest.approx(0.75)
    d = out["deltas"]["reflective - no_rag"]
    assert d["fid"]["delta"] < 0 and d["fid"]["ci"][1] < 0  # clearly better, and the CI says so
    assert d["accuracy"]["ci"][0] > 0
    with pytest.raises(ValueError, match="same number"):
        summarize_set(real, {"a": good, "b": _scores(good.fake_features[:10], [True] * 10)}, n_bootstrap=2)


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
