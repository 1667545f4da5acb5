"""The `realrag` command. Subcommands import what they need lazily, so `realrag gateway` never
pulls in torch and `realrag --help` answers instantly."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from importlib import import_module
from pathlib import Path

# Never let a command wait on a model hub: real weights are loaded from local paths or a cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _settings():
    from services.settings import get_settings

    return get_settings()


def _service_argv(args: argparse.Namespace) -> list[str]:
    return [*(["--host", args.host] if args.host else []), *(["--port", str(args.port)] if args.port else [])]


def cmd_gateway(args: argparse.Namespace) -> int:
    from services.gateway.__main__ import main as gateway_main

    return gateway_main(_service_argv(args))


def cmd_retriever(args: argparse.Namespace) -> int:
    from retriever_service.__main__ import main as retriever_main

    return retriever_main(_service_argv(args))


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the stack and supervise it: a crashed child is restarted with backoff; exit 1 when one
    keeps crashing (realrag.stack.RestartPolicy), 0 on Ctrl-C / SIGTERM."""
    import signal

    from realrag.stack import Stack, console

    def _stop(signum, frame):  # a SIGTERM must stop the children too (they run in their own sessions)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    s = _settings()
    from realrag.demo import serve_defaults
    from services.settings import Settings

    defaults = serve_defaults(s)
    if defaults:  # the installed world generator, unless the deployment chose a model or an encoder
        os.environ.update(defaults)  # the children read their settings from the environment
        s = Settings()
        console.print(f"default generator: {s.default_model} (installed world assets; set REALRAG_DEFAULT_MODEL to choose)")
    with Stack(s, s.data_dir / "logs").start() as stack:
        console.print(f"RealRAG is up: {stack.gateway_url}/playground  (Ctrl-C to stop)")
        try:
            return stack.supervise()
        except KeyboardInterrupt:
            return 0


def read_manifest(path: Path) -> list[dict]:
    """JSONL or CSV rows with `path` (relative to the manifest), `caption`, `object_id`, `label`."""
    text = path.read_text()
    rows = (
        [json.loads(line) for line in text.splitlines() if line.strip()]
        if path.suffix == ".jsonl"
        else list(csv.DictReader(io.StringIO(text)))
    )
    for row in rows:
        row["path"] = str((path.parent / row["path"]).resolve())
    return rows


def read_folder(root: Path) -> list[dict]:
    """One sub-folder per object: its name is the object id and label."""
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = folder.name.replace("_", " ").replace("-", " ")
        for image in sorted(folder.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"path": str(image), "object_id": folder.name, "label": label, "caption": f"a photo of the {label}"})
    return rows


def cmd_ingest(args: argparse.Namespace) -> int:
    from rich.progress import track

    source = Path(args.source)
    rows = read_manifest(source) if source.is_file() else read_folder(source)
    counts = {"new": 0, "duplicate": 0, "rejected": 0}
    ingest = _direct_ingest() if args.direct else _http_ingest(args.retriever_url or _settings().retriever_url)
    for row in track(rows, description=f"ingesting {len(rows)} images"):
        fields = {k: str(row[k]) for k in ("caption", "object_id", "label", "source", "license") if row.get(k)}
        with open(row["path"], "rb") as fh:
            duplicate, error = ingest(Path(row["path"]).name, fh.read(), fields)
        if error:
            counts["rejected"] += 1
            print(f"rejected {row['path']}: {error}", file=sys.stderr)
        else:
            counts["duplicate" if duplicate else "new"] += 1
    print(json.dumps(counts))
    return 0 if counts["rejected"] == 0 else 1


def _http_ingest(url: str):
    import httpx

    from retriever_service.auth import bearer_headers

    settings = _settings()  # an operator's tool: the admin token when set (it opens every route), else the service token
    token = settings.retriever_admin_token or settings.retriever_token
    client = httpx.Client(base_url=url.rstrip("/"), timeout=60, headers=bearer_headers(token))

    def ingest(name: str, data: bytes, fields: dict) -> tuple[bool, str | None]:
        response = client.post("/v1/images", files={"file": (name, data)}, data=fields)
        if response.status_code >= 400:
            return False, response.json().get("error", {}).get("message")
        return response.json()["duplicate"], None

    return ingest


def _direct_ingest():
    """Into the index in-process (the embedded engine has one owner: the retriever must be stopped)."""
    from retriever_service.service import Retriever
    from services.images import ImageRejected

    retriever = Retriever(_settings())

    def ingest(name: str, data: bytes, fields: dict) -> tuple[bool, str | None]:
        try:
            return retriever.ingest(data, **fields).duplicate, None
        except ImageRejected as exc:
            return False, exc.message

    return ingest


def cmd_generate(args: argparse.Namespace) -> int:
    """Local generation with no services: the same generator code the worker runs."""
    from PIL import Image

    from generator_service.families.base import GenerationInputs
    from generator_service.loader import get_generator
    from services.registry import load_registry

    s = _settings()
    models = load_registry(s)
    if args.model not in models:
        print(f"unknown model {args.model!r}; available: {', '.join(sorted(models))}", file=sys.stderr)
        return 2
    spec = models[args.model]
    generator, load_s = get_generator(args.model, s)
    refs = [Image.open(p).convert("RGB") for p in args.ref]
    started = time.perf_counter()
    images = generator.generate(
        GenerationInputs(
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            seeds=[args.seed + i for i in range(args.n)],
            steps=args.steps or spec.default_steps,
            guidance=args.guidance if args.guidance is not None else spec.default_guidance,
            width=args.width or spec.default_width,
            height=args.height or spec.default_height,
            references=refs,
            reference_labels=[None] * len(refs),
            ip_scale=args.ip_scale if args.ip_scale is not None else spec.default_ip_scale,
        )
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = out if len(images) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        image.save(path)
        paths.append(str(path))
    print(
        json.dumps(
            {"model": args.model, "outputs": paths, "load_s": round(load_s, 3), "generate_s": round(time.perf_counter() - started, 3)}
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from realrag.demo import run_demo

    return run_demo(_settings())


# Subcommands contributed by other packages: (module, function that adds the parser).
PLUGINS = [
    ("realrag.training.cli", "add_train_retriever_parser"),
    ("realrag.training.cli", "add_index_parser"),
    ("realrag.evaluation.cli", "add_eval_parser"),
    ("realrag.evaluation.cli", "add_world_parser"),
    ("realrag.tenants_cli", "add_tenants_parser"),
]


# Process-running commands skip the plugins: a gateway process must never import torch.
CORE_COMMANDS = {"serve", "gateway", "retriever", "worker", "probe", "ingest", "generate", "demo"}


def build_parser(with_plugins: bool = True) -> argparse.ArgumentParser:
    from generator_service.__main__ import add_probe_arguments, add_worker_arguments

    parser = argparse.ArgumentParser(prog="realrag", description="RealRAG: retrieval-augmented realistic image generation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run gateway, retriever and a worker locally (embedded Qdrant, Redis fallback)")
    p.set_defaults(func=cmd_serve)
    for name, func, helptext in (
        ("gateway", cmd_gateway, "run the HTTP gateway"),
        ("retriever", cmd_retriever, "run the retriever service"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.set_defaults(func=func)

    add_worker_arguments(sub.add_parser("worker", help="run a Celery generator worker (one per GPU)"))
    p = sub.add_parser("probe", help="container probes")
    p.add_argument("target", choices=["worker"])
    add_probe_arguments(p)

    p = sub.add_parser("ingest", help="ingest a folder (one sub-folder per object) or a JSONL/CSV manifest")
    p.add_argument("source")
    p.add_argument("--retriever-url")
    p.add_argument("--direct", action="store_true", help="write the embedded index in-process, no retriever service")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("generate", help="generate locally with no services")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt")
    p.add_argument("--ref", action="append", default=[], help="reference image (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--ip-scale", type=float)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="start the stack, ingest the sample corpus, generate once, stop (make run)")
    p.set_defaults(func=cmd_demo)

    for module_name, function in PLUGINS if with_plugins else ():
        try:
            getattr(import_module(module_name), function)(sub)
        except (ImportError, AttributeError):
            continue  # that part of the project is not installed in this image
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(with_plugins=not argv or argv[0] not in CORE_COMMANDS).parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
