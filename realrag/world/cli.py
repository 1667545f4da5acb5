"""`realrag world ...` (also `python -m realrag.world ...`): render the world, train its models.

    render            write a world (ImageFolder splits, captions, prompts) to a directory
    train-clip        base CLIP on the web split      -> realrag/world/assets/world-clip.safetensors
    train-evaluator   evaluator on real photos         -> realrag/world/assets/world-evaluator.safetensors
    train-generator   world-sd v1 on seen classes only -> realrag/world/assets/world-sd/
    build-assets      all of the above, in order, with the committed settings; the generator is
                      v1 (a temporary base) fine-tuned into v2 (``python -m realrag.world.train_generator_v2``)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from realrag.world import CLIP_CONFIG, CLIP_WEIGHTS, EVALUATOR_WEIGHTS, GENERATOR_DIR

# The settings the committed assets were trained with (`build-assets`); benchmarks/novel_objects.py
# uses the same numbers for its full run.
FULL_STEPS = {"clip": 500, "evaluator": 800, "generator": 3000, "generator_v2": 1500}


def _world_config(args):
    from realrag.world.catalog import WorldConfig

    cfg = WorldConfig.quick(args.seed) if getattr(args, "quick", False) else WorldConfig(seed=args.seed)
    if getattr(args, "image_size", None):
        cfg = WorldConfig(**{**cfg.as_dict(), "image_size": args.image_size})
    return cfg


def _load_or_render(args):
    from realrag.world.dataset import World, render_world

    root = Path(args.world)
    if (root / "world.json").is_file():
        return World.load(root)
    return render_world(root, _world_config(args))


def cmd_render(args) -> int:
    from realrag.world.dataset import render_world

    render_world(args.out, _world_config(args))
    return 0


def cmd_train_clip(args) -> int:
    from realrag.world.train_clip import train_world_clip

    stats = train_world_clip(_load_or_render(args), args.out, config_path=args.config, steps=args.steps,
                             batch_size=args.batch_size, seed=args.seed, threads=args.threads)
    _write_card(_card_path(args.out), "world-clip", stats, args)
    return 0


def cmd_train_evaluator(args) -> int:
    from realrag.world.train_evaluator import train_world_evaluator

    stats = train_world_evaluator(_load_or_render(args), args.out, steps=args.steps, seed=args.seed, threads=args.threads)
    _write_card(_card_path(args.out), "world-evaluator", stats, args)
    return 0


def cmd_train_generator(args) -> int:
    from realrag.world.train_generator import train_world_generator

    stats = train_world_generator(_load_or_render(args), args.out, steps=args.steps, batch_size=args.batch_size,
                                  seed=args.seed, threads=args.threads, time_budget_s=args.time_budget)
    _write_card(Path(args.out) / "training.json", "world-sd", stats, args)
    return 0


def cmd_build_assets(args) -> int:
    """Render the world and train all three models into the assets directory."""
    import tempfile

    from realrag.world.train_clip import train_world_clip
    from realrag.world.train_evaluator import train_world_evaluator
    from realrag.world.train_generator import train_world_generator
    from realrag.world.train_generator_v2 import train_world_generator_v2

    world = _load_or_render(args)
    assets = Path(args.assets)
    clip_w = assets / CLIP_WEIGHTS.name
    stats = {"clip": train_world_clip(world, clip_w, config_path=assets / CLIP_CONFIG.name, steps=FULL_STEPS["clip"],
                                      seed=args.seed, threads=args.threads)}
    stats["evaluator"] = train_world_evaluator(world, assets / EVALUATOR_WEIGHTS.name, steps=FULL_STEPS["evaluator"],
                                               seed=args.seed, threads=args.threads)
    with tempfile.TemporaryDirectory() as base:
        stats["generator_v1"] = train_world_generator(world, base, steps=FULL_STEPS["generator"], seed=args.seed,
                                                      threads=args.threads)
        stats["generator"] = train_world_generator_v2(world, assets / GENERATOR_DIR.name, init=base,
                                                      steps=FULL_STEPS["generator_v2"], seed=args.seed,
                                                      threads=args.threads)
    _write_card(assets / "training.json", "world assets", stats, args)
    return 0


def _card_path(weights: str | Path) -> Path:
    """How a model was made, beside its weights (not ``.json``: that is the CLIP config's name)."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".training.json")


def _write_card(path: Path, what: str, stats: dict, args) -> None:
    card = {"model": what, "command": "python -m realrag.world " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "stats": stats, "world_seed": args.seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=1) + "\n")


def add_world_parser(subparsers) -> argparse.ArgumentParser:
    world = subparsers.add_parser("world", help="the synthetic novel-objects world: render it, train its models")
    sub = world.add_subparsers(dest="world_command", required=True)

    def common(p, with_world=True):
        p.add_argument("--seed", type=int, default=0, help="world seed (and training seed)")
        p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
        if with_world:
            p.add_argument("--world", required=True, help="world directory (rendered there first if missing)")
            p.add_argument("--quick", action="store_true", help="the small quick world when rendering")

    p = sub.add_parser("render", help="render a world to a directory")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="a small world for tests (few classes, few photos)")
    p.add_argument("--image-size", type=int, default=None)
    common(p, with_world=False)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("train-clip", help="train the base world CLIP (zero-shot retriever)")
    common(p)
    p.add_argument("--out", default=str(CLIP_WEIGHTS))
    p.add_argument("--config", default=str(CLIP_CONFIG))
    p.add_argument("--steps", type=int, default=FULL_STEPS["clip"])
    p.add_argument("--batch-size", type=int, default=128)
    p.set_defaults(func=cmd_train_clip)

    p = sub.add_parser("train-evaluator", help="train the evaluator (classifier + FID features)")
    common(p)
    p.add_argument("--out", default=str(EVALUATOR_WEIGHTS))
    p.add_argument("--steps", type=int, default=FULL_STEPS["evaluator"])
    p.set_defaults(func=cmd_train_evaluator)

    p = sub.add_parser("train-generator", help="train world-sd on the seen classes")
    common(p)
    p.add_argument("--out", default=str(GENERATOR_DIR))
    p.add_argument("--steps", type=int, default=FULL_STEPS["generator"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_train_generator)

    p = sub.add_parser("build-assets", help="render + train all world models into the assets directory")
    common(p)
    p.add_argument("--assets", default=str(CLIP_WEIGHTS.parent))
    p.set_defaults(func=cmd_build_assets)
    return world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services")
    sub = parser.add_subparsers(dest="command", required=True)
    add_world_parser(sub)
    args = parser.parse_args(["world", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
