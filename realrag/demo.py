"""`make run`: the whole system end to end on one machine, printed as a person would check it.

With the synthetic world's trained models installed (realrag/world/assets) the demo serves
`world-sd` with the world corpus and asks for an object world-sd never saw, by its invented name;
without them it falls back to the tiny random models and a drawn sample corpus.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from realrag.stack import Stack
from services.artifacts import artifact_store
from services.settings import Settings

console = Console()
REPO = Path(__file__).resolve().parents[1]
WORLD_ASSETS = REPO / "realrag" / "world" / "assets"


@dataclass
class DemoPlan:
    name: str
    env: dict[str, str]
    corpus: list  # items with .image .caption .object_id .label
    request: dict


def world_installed() -> bool:
    return (WORLD_ASSETS / "world-clip.safetensors").is_file() and (WORLD_ASSETS / "world-sd").is_dir()


def plan() -> DemoPlan:
    if world_installed():
        from realrag.world.demo import demo_corpus, demo_prompt

        prompt, obj = demo_prompt()
        return DemoPlan(
            name=f"world-sd, unseen object {obj.name!r}",
            env={
                "REALRAG_ENCODER_MODEL": str(WORLD_ASSETS / "world-clip.json"),
                "REALRAG_ENCODER_PRETRAINED": str(WORLD_ASSETS / "world-clip.safetensors"),
                "REALRAG_DEFAULT_MODEL": "world-sd",
            },
            corpus=demo_corpus(),
            request={"prompt": prompt, "model": "world-sd", "seed": 7, "n": 2, "width": 64, "height": 64, "retrieval": {"top_k": 1}},
        )
    from realrag.sample_corpus import sample_corpus

    return DemoPlan(
        name="tiny-sd (random weights; install the world models for a meaningful picture)",
        env={"REALRAG_ENCODER_MODEL": str(REPO / "retriever_service" / "configs" / "tiny-clip.json"), "REALRAG_DEFAULT_MODEL": "tiny-sd"},
        corpus=sample_corpus(),
        request={"prompt": "a photo of the Quenta Sprite parked by the sea", "model": "tiny-sd", "seed": 7, "retrieval": {"top_k": 2}},
    )


def run_demo(settings: Settings) -> int:
    started = time.perf_counter()
    demo = plan()
    os.environ.update(demo.env)  # the stack's children read their settings from the environment
    settings = Settings()
    console.print(f"[bold]RealRAG demo:[/] {demo.name}")
    with Stack(settings, settings.data_dir / "logs").start() as stack:
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
            for item in demo.corpus:
                buf = io.BytesIO()
                item.image.save(buf, format="PNG")
                http.post(
                    "/v1/corpus/images",
                    files={"file": ("photo.png", buf.getvalue(), "image/png")},
                    data={"caption": item.caption, "object_id": item.object_id, "label": item.label, "source": "realrag-demo"},
                ).raise_for_status()
            console.print(f"ingested {len(demo.corpus)} corpus photos")
            response = http.post("/v1/generations", json=demo.request)
            response.raise_for_status()
            job = response.json()
            console.print(f"submitted job {job['id']} ({job['status']}): {demo.request['prompt']!r}")
            while job["status"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.3)
                job = http.get(f"/v1/generations/{job['id']}").json()
    print(json.dumps(job, indent=2))
    if job["status"] != "succeeded":
        return 1
    store = artifact_store(settings)
    for ref in job["references"]:
        path = store.location(ref["image_uri"])
        print(f"reference: {ref['label']} ({ref['object_id']}), score {ref['score']:.3f}: {path}")
    for out in job["outputs"]:
        print(f"output: {store.location(out['uri'])}")
    console.print(f"make run wall time: {time.perf_counter() - started:.1f}s")
    return 0
