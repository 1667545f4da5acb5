import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generator_benchmark_smoke_mode_runs_every_family(tmp_path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_generators.py"), "--smoke", "--output", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    text = json.dumps(report)
    for model in ("tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-omnigen"):
        assert model in text


def test_index_benchmark_compares_engines_against_the_baseline(tmp_path):
    out = tmp_path / "index.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "index_search.py"), "--points", "300", "--queries", "10", "--output", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["ratios_edge_over_baseline"]) == {"upsert_s", "query_p50_ms", "filtered_p50_ms"}
    assert all(r["recall_at_k"] == 1.0 for r in report["results"].values())
