"""`realrag eval` end to end with real (tiny) models: on the synthetic world, and on a plain
ImageFolder with another generator family and CLIP-based metrics, as a user's data set would run."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realrag.evaluation.cli import main
from realrag.evaluation.metrics import METRICS

REPO = Path(__file__).resolve().parents[3]
TINY_CLIP = REPO / "retriever_service" / "configs" / "tiny-clip.json"
METRIC_KEYS = {"fid", "fid_n", "kid", "clip_t", "clip_i", "accuracy", "ci"}


def _png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    return Image.open(path).size


def test_world_eval_writes_every_output(tiny_setup, tmp_path):
    out = tmp_path / "eval"
    rc = main(["--world", str(tiny_setup.world.root), "--model", "tiny-world",
               "--retriever-pretrained", str(tiny_setup.clip),
               "--features", f"world-evaluator:{tiny_setup.evaluator}",
               "--classifier", f"world-evaluator:{tiny_setup.evaluator}",
               "--arm", "no_rag", "--arm", "zero_shot", "--arm", f"standard={tiny_setup.clip}",
               "--images-per-prompt", "2", "--steps", "2", "--bootstrap", "10", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    for set_name in ("unseen", "seen"):
        assert set(result[set_name]) == {"no_rag", "zero_shot", "standard"}
        for arm in result[set_name].values():
            assert METRIC_KEYS <= set(arm) and arm["n"] == 2 * len(getattr(tiny_setup.world, set_name))
            assert 0 <= arm["accuracy"] <= 1 and arm["fid_n"] >= 0
            assert all(arm["ci"][m][0] <= arm[m] <= arm["ci"][m][1] for m in METRICS)  # points inside their intervals
        sens = result["reference_sensitivity"][set_name]
        assert set(sens["probe"]) >= {"right", "wrong", "none", "right_minus_wrong_accuracy"}
        for split in [*(sens["probe"][p] for p in ("right", "wrong", "none")), *(s for a in sens["arms"].values()
                                                                                   for s in a.values())]:
            assert 0 <= split["accuracy"] <= 1 and 0 <= split["distance"] <= 2 and split["n"] > 0
        assert 0 <= sens["probe"]["wrong"]["wrong_shown"] <= 1
        assert set(sens["arms"]["no_rag"]) == {"none"}
        assert sens["probe"]["right"]["wrong_shown"] is None and "NaN" not in (out / "results.json").read_text()
        assert sum(s["prompts"] for s in sens["arms"]["zero_shot"].values()) == len(getattr(tiny_setup.world, set_name))
    assert set(result["retrieval"]) == {"zero_shot", "standard"}
    assert {"recall@1", "recall@5"} <= set(result["retrieval"]["zero_shot"])
    # the full-state-dict arm and the base encoder are the same model: same references, same outputs
    assert result["retrieval"]["standard"]["by_set"] == result["retrieval"]["zero_shot"]["by_set"]
    assert result["unseen"]["standard"]["fid"] == result["unseen"]["zero_shot"]["fid"]
    assert "world-evaluator" in result["setup"]["feature_space"]
    report = (out / "report.md").read_text()
    assert "world-evaluator 128-d" in report and "| zero_shot |" in report and "grid.png" in report
    assert "reference sensitivity" in report and "prompt-level" in report and "reference_grid.png" in report
    _png_ok(out / "reference_grid.png")
    w, h = _png_ok(out / "grid.png")
    assert w > 500 and h > 100
    _png_ok(out / "bars.png")
    samples = list((out / "samples" / "unseen" / "no_rag").glob("*.png"))
    assert len(samples) == 2 * len(tiny_setup.world.unseen)


def _user_folder(root: Path, classes: dict[str, tuple[int, int, int]], n: int, offset: int) -> Path:
    rng = np.random.default_rng(offset)
    for name, color in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(np.array(color) + rng.normal(0, 20, (40, 48, 3)), 0, 255).astype("uint8")
            Image.fromarray(arr).save(root / name / f"{i}.jpg")
    return root


def test_plain_image_folder_with_another_family_and_clip_metrics(tmp_path):
    classes = {"red_fox": (200, 60, 30), "blue-jay": (40, 70, 200), "green_frog": (40, 180, 60)}
    corpus = _user_folder(tmp_path / "corpus", classes, 3, 0)
    real = _user_folder(tmp_path / "real", classes, 4, 1)
    (real / "labels.json").write_text(json.dumps({"blue-jay": "Blue Jay"}))
    out = tmp_path / "eval"
    rc = main(["--model", "tiny-sd", "--corpus", str(corpus), "--real", str(real),
               "--retriever-model", str(TINY_CLIP), "--arm", "no_rag", "--arm", "zero_shot",
               "--images-per-prompt", "2", "--steps", "2", "--bootstrap", "5", "--no-save-images", "--no-reference-probe",
               "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["all"]) == {"no_rag", "zero_shot"} and result["all"]["no_rag"]["n"] == 6
    assert result["setup"]["feature_space"].startswith("clip image tower")
    assert result["setup"]["classifier"].startswith("clip zero-shot over 3 classes")
    assert not (out / "samples").exists()
    assert result["reference_sensitivity"]["all"]["probe"] == {} and not (out / "reference_grid.png").exists()
    _png_ok(out / "grid.png")


def test_bad_inputs_fail_clearly(tiny_setup, tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "class": "not-a-class"}) + "\n")
    args = ["--world", str(tiny_setup.world.root), "--model", "tiny-world", "--retriever-pretrained",
            str(tiny_setup.clip), "--features", f"world-evaluator:{tiny_setup.evaluator}",
            "--classifier", f"world-evaluator:{tiny_setup.evaluator}", "--out", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="not a folder of the corpus"):
        main([*args, "--prompts", f"x={bad}"])
    with pytest.raises(ValueError, match="needs a retriever checkpoint"):
        main([*args, "--arm", "reflective"])
    with pytest.raises(FileNotFoundError, match="checkpoint for arm 'reflective' not found"):
        main([*args, "--arm", f"reflective={tmp_path / 'nope.safetensors'}"])


def test_novel_objects_quick_run(tmp_path):
    """The benchmark's --quick mode: every stage (world, CLIP, evaluator, world-sd, both retrievers
    through realrag.training, eval) on tiny budgets; checks the plumbing, not the numbers."""
    out = tmp_path / "quick"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "novel_objects.py"), "--quick", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "novel_objects.json").read_text())
    for set_name in ("unseen", "seen"):
        assert set(result[set_name]) == {"no_rag", "zero_shot", "standard", "reflective"}
        assert all(METRIC_KEYS <= set(arm) for arm in result[set_name].values())
    assert set(result["retrieval"]) == {"zero_shot", "standard", "reflective"}
    assert all({"recall@1", "recall@5"} <= set(r) for r in result["retrieval"].values())
    assert {"command", "seconds", "date"} <= set(result) and "--quick" in result["command"]
    sources = result["setup"]["arm_sources"]
    assert "text tower" in sources["standard"] and "text tower" in sources["reflective"]
    for name in ("grid.png", "bars.png", "report.md", "mining.png"):
        assert (out / "eval" / name).is_file()
    assert result["training"]["generator"]["steps"] == 3  # world-sd v2, fine-tuned from the v1 base
    assert json.loads((out / "models" / "world-sd" / "config.json").read_text())["version"] == 2
    mining = result["mining"]
    assert mining["prompts"] > 0 and abs(sum(mining["share"].values()) - 1) < 0.01
    spec = importlib.util.spec_from_file_location("novel_objects", REPO / "benchmarks" / "novel_objects.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(bench)
    lines = bench.findings(result)
    assert lines[0].startswith("- Unseen objects, identity accuracy no RAG")
    assert any(line.startswith("- Reference sensitivity") for line in lines)
    assert any("reflective - standard" in line for line in lines)
