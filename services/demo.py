"""`make run`: the whole system end to end on one machine, printed as a person would check it."""

from __future__ import annotations

import io
import json
import time

import httpx
from rich.console import Console

from services.sample_corpus import sample_corpus
from services.settings import Settings
from services.stack import Stack

console = Console()
PROMPT = "a photo of the Quenta Sprite parked by the sea"


def run_demo(settings: Settings) -> int:
    started = time.perf_counter()
    with Stack(settings, settings.data_dir / "logs").start() as stack:
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
            corpus = sample_corpus()
            for item in corpus:
                buf = io.BytesIO()
                item.image.save(buf, format="PNG")
                http.post(
                    "/v1/corpus/images",
                    files={"file": ("photo.png", buf.getvalue(), "image/png")},
                    data={"caption": item.caption, "object_id": item.object_id, "label": item.label, "source": "realrag-sample"},
                ).raise_for_status()
            console.print(f"ingested {len(corpus)} sample photos")
            response = http.post("/v1/generations", json={"prompt": PROMPT, "seed": 7, "retrieval": {"top_k": 2}})
            response.raise_for_status()
            job = response.json()
            console.print(f"submitted job {job['id']} ({job['status']})")
            while job["status"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.3)
                job = http.get(f"/v1/generations/{job['id']}").json()
    print(json.dumps(job, indent=2))
    if job["status"] != "succeeded":
        return 1
    for out in job["outputs"]:
        print(f"output: {(settings.artifact_root / out['uri']).resolve()}")
    console.print(f"make run wall time: {time.perf_counter() - started:.1f}s")
    return 0
