"""benchmarks/load.py --quick end to end: it starts its processes, drives them with wrk and writes
the JSON the docs table comes from. Shape only, no timing asserts."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]


def test_load_benchmark_quick_mode_writes_every_case(tmp_path):
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load.py"), "--quick", "--redis-url", f"redis://{TEST_REDIS}/12", "--output", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    report = json.loads(out.read_text())
    cases = report["results"]
    for prefix in (
        "bare POST /v1/generations",
        "gateway POST /v1/generations (retrieval on)",
        "gateway POST /v1/generations (retrieval off)",
        "gateway GET /v1/generations/{id}",
        "retriever POST /v1/search (",
    ):
        assert any(name.startswith(prefix) for name in cases), prefix
    for name, row in cases.items():
        assert row["rps"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, name
        assert row["errors"] == 0, name  # every answer was 2xx: no 429/503 counted as throughput
        assert name.startswith("bare") or row["rps_ratio"] > 0
    assert 0 < report["ingest_http"]["created"] <= report["ingest_http"]["images"]
    assert report["ingest_direct"]["images_per_s"] > 0
    assert 0 < report["vector_index"]["hnsw_recall_at_5"] <= 1
