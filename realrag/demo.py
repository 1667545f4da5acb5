"""`make run`: the whole system end to end on one machine, printed as a person would check it.

With the synthetic world's trained models installed (realrag/world/assets) the demo serves
`world-sd` with the world corpus and asks for an object world-sd never saw, by its invented name;
without them it falls back to the tiny random models and a drawn sample corpus. It saves a
side-by-side picture (a photo of the asked object, the retrieved reference(s), the outputs) and
prints its path. `realrag serve` uses the same world defaults when the assets are installed and the
deployment chose no model or encoder (``serve_defaults``).
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFont
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
    target: Image.Image | None = None  # a corpus photo of the object asked for, when the demo knows it
    target_label: str = ""


def world_installed() -> bool:
    return (WORLD_ASSETS / "world-clip.safetensors").is_file() and (WORLD_ASSETS / "world-sd").is_dir()


def world_env() -> dict[str, str]:
    """Settings for serving world-sd with the world CLIP as the retriever's encoder."""
    return {
        "REALRAG_ENCODER_MODEL": str(WORLD_ASSETS / "world-clip.json"),
        "REALRAG_ENCODER_PRETRAINED": str(WORLD_ASSETS / "world-clip.safetensors"),
        "REALRAG_DEFAULT_MODEL": "world-sd",
    }


def serve_defaults(settings: Settings) -> dict[str, str]:
    """What `realrag serve` adds to the environment: the world generator and its CLIP when the world's
    assets are installed and the deployment chose neither a model nor an encoder (a newcomer's first
    image is then an object, not the tiny random model's noise)."""
    chosen = {"default_model", "served_models", "encoder_model", "encoder_pretrained"} & settings.model_fields_set
    return {} if chosen or not world_installed() else world_env()


def plan() -> DemoPlan:
    if world_installed():
        from realrag.world.demo import demo_corpus, demo_prompt

        prompt, obj = demo_prompt()
        corpus = demo_corpus()
        return DemoPlan(
            name=f"world-sd, unseen object {obj.name!r}",
            env=world_env(),
            corpus=corpus,
            request={"prompt": prompt, "model": "world-sd", "seed": 7, "n": 2, "width": 64, "height": 64, "retrieval": {"top_k": 1}},
            target=next((c.image for c in corpus if c.object_id == obj.slug), None),
            target_label=f"asked for: {obj.name}",
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
        print(f"reference: {ref['label']} ({ref['object_id']}), score {ref['score']:.3f}: {relative(path)}")
    for out in job["outputs"]:
        print(f"output: {relative(store.location(out['uri']))}")
    picture = side_by_side(
        demo.target, demo.target_label,
        [(_open(store.get(r["image_uri"])), f"retrieved: {r['label']} ({r['score']:.2f})") for r in job["references"]],
        [(_open(store.get(o["uri"])), f"output {k + 1}") for k, o in enumerate(job["outputs"])],
        settings.data_dir / "side-by-side.png")
    print(f"side by side (asked object | retrieved reference | outputs): {relative(picture)}")
    console.print(f"make run wall time: {time.perf_counter() - started:.1f}s")
    return 0


def relative(path: str | Path) -> str:
    """A path under the working directory as a relative one (what a person can paste)."""
    text = str(path)
    if "://" in text:
        return text
    try:
        return str(Path(text).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return text


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def side_by_side(target: Image.Image | None, target_label: str, references: list[tuple[Image.Image, str]],
                 outputs: list[tuple[Image.Image, str]], path: Path, cell: int = 192) -> Path:
    """One row: the asked object's photo (when known), the retrieved reference(s), the outputs;
    each upscaled to ``cell`` pixels without smoothing and captioned."""
    tiles = ([(target, target_label)] if target is not None else []) + references + outputs
    gap, caption = 8, 34
    sheet = Image.new("RGB", (len(tiles) * (cell + gap) + gap, cell + caption + 2 * gap), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # older Pillow
        font = ImageFont.load_default()
    for k, (image, label) in enumerate(tiles):
        x = gap + k * (cell + gap)
        sheet.paste(image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, gap))
        draw.text((x, cell + gap + 4), label[:30] + ("\n" + label[30:60] if len(label) > 30 else ""), fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
