"""What the service adds around a generation: the same tiny-sd request through the whole stack
(HTTP → retriever → Redis/Celery → worker → PNG → polled status) against a direct in-process
`generator.generate` call (the baseline), in one run.

    python benchmarks/service_overhead.py --jobs 20

Prints a table, writes benchmarks/results/service_overhead.json (ratios stack / direct).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from realrag.sample_corpus import sample_corpus  # noqa: E402
from realrag.stack import free_port  # noqa: E402

BODY = {"prompt": "the Quenta Sprite by the sea", "model": "tiny-sd", "width": 64, "height": 64, "steps": 4, "retrieval": {"top_k": 1}}


def direct(jobs: int) -> dict:
    from generator_service.families.base import GenerationInputs
    from generator_service.loader import get_generator
    from services.settings import Settings

    generator, _ = get_generator("tiny-sd", Settings())
    reference = sample_corpus()[3].image
    wall = []
    for seed in range(jobs):
        t = time.perf_counter()
        image = generator.generate(
            GenerationInputs(prompt=BODY["prompt"], seeds=[seed], steps=4, guidance=5.0, width=64, height=64, references=[reference])
        )[0]
        image.save(io.BytesIO(), format="PNG")
        wall.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": statistics.median(wall), "mean_ms": statistics.fmean(wall)}


def through_stack(jobs: int) -> dict:
    from realrag.stack import Stack
    from services.settings import Settings

    tmp = tempfile.mkdtemp()
    os.environ.update(
        {
            "REALRAG_DATA_DIR": tmp,
            "REALRAG_ENCODER_MODEL": str(ROOT / "retriever_service/configs/tiny-clip.json"),
            "REALRAG_GATEWAY_PORT": str(free_port()),
            "REALRAG_RETRIEVER_PORT": str(free_port()),
            "REALRAG_QUEUE_NAME": f"realrag.bench.{os.getpid()}",
        }
    )
    settings = Settings()
    stages: dict[str, list[float]] = {k: [] for k in ("retrieval_ms", "queue_ms", "generation_ms", "store_ms", "total_ms")}
    wall = []
    with Stack(settings, Path(tmp) / "logs").start() as stack, httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
        for item in sample_corpus():
            buf = io.BytesIO()
            item.image.save(buf, format="PNG")
            http.post(
                "/v1/corpus/images",
                files={"file": ("p.png", buf.getvalue(), "image/png")},
                data={"label": item.label, "object_id": item.object_id},
            )
        http.post("/v1/generations", json={**BODY, "seed": 0})  # warm the worker (model load)
        time.sleep(3)
        for seed in range(1, jobs + 1):
            t = time.perf_counter()
            job = http.post("/v1/generations", json={**BODY, "seed": seed}).json()
            while job["status"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.01)
                job = http.get(f"/v1/generations/{job['id']}").json()
            wall.append((time.perf_counter() - t) * 1000)
            assert job["status"] == "succeeded", job
            for key in stages:
                stages[key].append(job["timings"][key])
    return {
        "p50_ms": statistics.median(wall),
        "mean_ms": statistics.fmean(wall),
        "stages_p50_ms": {k: statistics.median(v) for k, v in stages.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "service_overhead.json")
    args = parser.parse_args()
    baseline = direct(args.jobs)
    stack = through_stack(args.jobs)
    ratio = stack["p50_ms"] / baseline["p50_ms"]
    table = Table(title=f"tiny-sd 64², 4 steps, 1 reference, {args.jobs} sequential jobs")
    for column in ("path", "p50 ms", "mean ms"):
        table.add_column(column, justify="right")
    table.add_row("direct generate (baseline)", f"{baseline['p50_ms']:.1f}", f"{baseline['mean_ms']:.1f}")
    table.add_row("through the stack (client wall)", f"{stack['p50_ms']:.1f}", f"{stack['mean_ms']:.1f}")
    table.add_row("ratio stack/direct", f"{ratio:.2f}", "")
    for key, value in stack["stages_p50_ms"].items():
        table.add_row(f"  job timings: {key}", f"{value:.1f}", "")
    Console(width=120).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "service_overhead",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "python " + " ".join(sys.argv),
                "jobs": args.jobs,
                "direct": baseline,
                "stack": stack,
                "ratio_stack_over_direct_p50": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
