"""argparse wiring for `realrag eval` and `realrag world` (the lead's realrag/cli.py mounts both).

    realrag eval --world DIR --arm no_rag --arm zero_shot --arm reflective=CKPT --out runs/eval
    realrag eval --model sd15 --corpus data/cars/corpus --real data/cars/test --prompts cars=prompts.jsonl \\
        --retriever-model ViT-B-32 --retriever-pretrained laion2b_s34b_b79k \\
        --features inception:/weights/pt_inception-2015-12-05.pth --classifier clip-zeroshot \\
        --arm no_rag --arm zero_shot --arm standard=runs/std --arm reflective=runs/refl --out runs/eval-cars
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from realrag.world.cli import add_world_parser  # noqa: F401  (re-exported for realrag/cli.py)


def _prompt_sets(values: list[str]) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = Path(v).stem, v
        out[name.strip()] = Path(path)
    return out


def config_from_args(args):
    from realrag.evaluation.harness import EvalConfig
    from realrag.evaluation.retrieval import ArmSpec

    arms = [ArmSpec.parse(a) for a in (args.arm or ["no_rag", "zero_shot"])]
    kw: dict[str, Any] = {}
    if args.world:
        from realrag.world import CLIP_CONFIG, CLIP_WEIGHTS

        root = Path(args.world)
        if not (root / "world.json").is_file():
            raise SystemExit(f"{root} is not a rendered world (run `realrag world render --out {root}`)")
        kw = dict(corpus=root / "images" / "corpus", real=root / "images" / "test",
                  prompt_sets={"unseen": root / "prompts" / "unseen.jsonl", "seen": root / "prompts" / "seen.jsonl"},
                  model="world-sd", retriever_model=str(CLIP_CONFIG), retriever_pretrained=str(CLIP_WEIGHTS),
                  features="world-evaluator", classifier="world-evaluator", title="Novel objects (synthetic world)")
    explicit = dict(corpus=args.corpus, real=args.real, model=args.model, retriever_model=args.retriever_model,
                    retriever_pretrained=args.retriever_pretrained, features=args.features, classifier=args.classifier,
                    title=args.title)
    kw.update({k: v for k, v in explicit.items() if v is not None})
    if args.prompts:
        kw["prompt_sets"] = _prompt_sets(args.prompts)
    kw.setdefault("prompt_sets", {"all": None})
    for required in ("corpus", "real", "model"):
        if kw.get(required) is None:
            raise SystemExit(f"--{required} is required (or --world DIR)")
    return EvalConfig(
        out_dir=Path(args.out), arms=arms, scorer_model=args.scorer_model, scorer_pretrained=args.scorer_pretrained,
        images_per_prompt=args.images_per_prompt, seed=args.seed, steps=args.steps, guidance=args.guidance,
        ip_scale=args.ip_scale, width=args.width, height=args.height, top_k=args.top_k, n_bootstrap=args.bootstrap,
        confidence=args.confidence, device=args.device, save_images=not args.no_save_images,
        reference_probe=not args.no_reference_probe,
        command=_command_line(args), **kw)


def _command_line(args) -> str:
    argv = getattr(args, "argv", None)
    if argv is not None:
        return "realrag eval " + " ".join(shlex.quote(a) for a in argv)
    return "realrag " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def cmd_eval(args) -> int:
    from realrag.evaluation.harness import run_evaluation

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_evaluation(config_from_args(args))
    return 0


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="evaluate generation arms (no_rag, zero_shot, standard, reflective)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", help="a rendered world directory: sets every default below for it")
    p.add_argument("--model", help="generator model key (services/models.toml)")
    p.add_argument("--corpus", type=Path, help="retrieval database: ImageFolder (ROOT/<class>/<image>)")
    p.add_argument("--real", type=Path, help="real reference images for FID/KID and CLIP-I: ImageFolder, same classes")
    p.add_argument("--prompts", action="append", metavar="NAME=JSONL",
                   help='prompt set, repeatable; lines {"prompt": ..., "class": FOLDER}; default: one prompt per class')
    p.add_argument("--arm", action="append", metavar="NAME[=CHECKPOINT]",
                   help="repeatable: no_rag, zero_shot, or NAME=retriever checkpoint (e.g. reflective=runs/refl)")
    p.add_argument("--retriever-model", help="base open_clip model name or config JSON")
    p.add_argument("--retriever-pretrained", help="base open_clip pretrained tag or weights file")
    p.add_argument("--scorer-model", help="CLIP for CLIP-T/CLIP-I (default: the base retriever model)")
    p.add_argument("--scorer-pretrained")
    p.add_argument("--features", help="FID/KID feature space: inception:PATH | world-evaluator[:PATH] | clip[:MODEL@PRETRAINED]"
                                      " (default: clip, the scorer's image tower)")
    p.add_argument("--classifier", help="world-evaluator[:PATH] | clip-zeroshot (default)")
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--ip-scale", type=float)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--title")
    p.add_argument("--no-save-images", action="store_true")
    p.add_argument("--no-reference-probe", action="store_true",
                   help="skip the reference-sensitivity probe (right / wrong reference per prompt: 2 generator calls each)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m realrag.evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    args = parser.parse_args(["eval", *argv])
    args.argv = argv
    return args.func(args)
