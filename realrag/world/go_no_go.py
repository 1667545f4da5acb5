"""Go/no-go for world-sd v2 (issue 14.1): does the generator follow its reference? v1 vs v2.

    python -m realrag.world.go_no_go --world .realrag/world [--v2 realrag/world/assets/world-sd] \\
        [--v1 DIR] [--seeds 4] [--steps 20] [--grid /tmp/go-no-go.png]

(a v1 directory: ``python -m realrag.world train-generator --world .realrag/world --out DIR``; the
novel-objects benchmark measures its own v1 base against v2 the same way.)

Measured with the committed evaluator (``world-evaluator``: accuracy = its top-1 over all classes is
the intended object) on ALL unseen objects x ``seeds`` seeds, and on all seen objects:

* unseen, name only ("a photo of <invented name>", no reference);
* unseen, name + true reference (a corpus photo of the object; photo ``seed % n``);
* unseen, generic prompt ("a photo of a product") + true reference;
* unseen, name + wrong reference (a sibling's photo, else another unseen object): accuracy for the
  named object, and how often the output shows the reference's object instead (``--wrong``);
* seen, name + true reference;
* the reference encoder's 1-NN same-object rate over the corpus (cosine; v1: its pooled embedding,
  v2: its identity embedding).

Gates: name+ref minus name-only >= 0.15; generic+ref >= 0.4; seen name+ref not below v1's; 1-NN >= 0.85.
The world must be the one the evaluator was trained on (``WorldConfig()``, seed 0, for the committed assets).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from realrag.world import EVALUATOR_WEIGHTS, GENERATOR_DIR
from realrag.world.catalog import GENERIC_PROMPT, PROMPT_TEMPLATE
from realrag.world.dataset import World

GATES = {"gain_name_ref": 0.15, "generic_ref": 0.4, "nn_same_object": 0.85}


def _corpus_photos(world: World, slug: str) -> list[Path]:
    return sorted((world.split_dir("corpus") / slug).glob("*.png"))


def _wrong_reference(world: World, cls) -> object:
    siblings = [c for c in world.classes if c.line == cls.line and c is not cls]
    if siblings:
        return siblings[0]
    unseen = world.unseen
    return unseen[(unseen.index(cls) + 1) % len(unseen)]


def conditions(world: World, seeds: list[int], wrong: bool) -> dict[str, list[tuple[str, Path | None, int, int, int]]]:
    """condition -> rows (prompt, reference path or None, seed, intended class index, reference class index or -1)."""
    out: dict[str, list] = {"unseen name": [], "unseen name+ref": [], "unseen generic+ref": [], "seen name+ref": []}
    if wrong:
        out["unseen name+wrong ref"] = []
    for c in world.unseen:
        photos = _corpus_photos(world, c.slug)
        prompt = PROMPT_TEMPLATE.format(name=c.name)
        for s in seeds:
            ref = photos[s % len(photos)]
            out["unseen name"].append((prompt, None, s, c.index, -1))
            out["unseen name+ref"].append((prompt, ref, s, c.index, c.index))
            out["unseen generic+ref"].append((GENERIC_PROMPT, ref, s, c.index, c.index))
            if wrong:
                w = _wrong_reference(world, c)
                wp = _corpus_photos(world, w.slug)
                out["unseen name+wrong ref"].append((prompt, wp[s % len(wp)], s, c.index, w.index))
    for c in world.seen:
        photos = _corpus_photos(world, c.slug)
        for s in seeds:
            out["seen name+ref"].append((PROMPT_TEMPLATE.format(name=c.name), photos[s % len(photos)], s, c.index, c.index))
    return out


def nn_same_object(pipe, world: World) -> float:
    """Share of corpus photos whose nearest other corpus photo (cosine, reference encoder) is the same object."""
    images, labels = [], []
    for c in world.classes:
        for p in _corpus_photos(world, c.slug):
            images.append(Image.open(p).convert("RGB"))
            labels.append(c.index)
    emb = torch.nn.functional.normalize(pipe.reference_embeddings(images).float(), dim=-1)
    sims = emb @ emb.T
    sims.fill_diagonal_(-2)
    lab = torch.tensor(labels)
    return (lab[sims.argmax(1)] == lab).float().mean().item()


def evaluate_model(pipe, world: World, evaluator, seeds: list[int], *, steps: int, guidance: float,
                   ref_guidance: float | None, wrong: bool, batch: int = 128, log=print) -> tuple[dict, dict]:
    """(metrics, images per condition) for one pipeline."""
    from generator_service.world_sd import tensor_to_images

    slug_to_out = {slug: i for i, slug in enumerate(evaluator.class_names)}
    eval_index = torch.tensor([slug_to_out[c.slug] for c in world.classes])  # world class index -> evaluator output
    kwargs = {"ref_guidance": ref_guidance} if ref_guidance is not None and hasattr(pipe.cfg, "ref_guidance") else {}
    metrics: dict[str, float] = {}
    images: dict[str, list[Image.Image]] = {}
    t0 = time.time()
    for name, rows in conditions(world, seeds, wrong).items():
        outs = []
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            refs = [Image.open(r[1]).convert("RGB") if r[1] else None for r in chunk]
            outs.append(pipe.sample_many([r[0] for r in chunk], refs, [r[2] for r in chunk], steps=steps,
                                         guidance=guidance, **kwargs))
        x = torch.cat(outs)
        with torch.no_grad():
            pred = evaluator(x).argmax(1)
        intended = eval_index[torch.tensor([r[3] for r in rows])]
        metrics[name] = (pred == intended).float().mean().item()
        if name == "unseen name+wrong ref":
            shown = eval_index[torch.tensor([r[4] for r in rows])]
            metrics["unseen wrong ref copied"] = (pred == shown).float().mean().item()
        images[name] = tensor_to_images(x)
        log(f"[go/no-go] {name}: {metrics[name]:.3f} ({len(rows)} images, {time.time() - t0:.0f}s)")
    metrics["gain name+ref - name"] = metrics["unseen name+ref"] - metrics["unseen name"]
    metrics["1-NN same object (corpus)"] = nn_same_object(pipe, world)
    return metrics, images


def verdict(v1: dict | None, v2: dict) -> dict[str, bool]:
    out = {
        "name+ref - name >= 0.15": v2["gain name+ref - name"] >= GATES["gain_name_ref"],
        "generic+ref >= 0.4": v2["unseen generic+ref"] >= GATES["generic_ref"],
        "1-NN same object >= 0.85": v2["1-NN same object (corpus)"] >= GATES["nn_same_object"],
    }
    if v1 is not None:
        out["seen name+ref >= v1"] = v2["seen name+ref"] >= v1["seen name+ref"]
    return out


def table(results: dict[str, dict]) -> str:
    names = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    lines = [f"| metric | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{results[n].get(k, float('nan')):.3f}" for n in names) + " |")
    return "\n".join(lines)


def save_grid(world: World, pipes: dict, path: Path, *, steps: int, guidance: float, ref_guidance: float | None,
              objects: int = 8, seeds: int = 2, scale: int = 3) -> Path:
    """Rows: unseen objects (spread over the lines); columns: the true reference | per model, name+ref
    outputs for ``seeds`` seeds (sampled afresh, same settings as the measurement)."""
    from PIL import ImageDraw

    from generator_service.world_sd import tensor_to_images

    unseen = world.unseen
    picks = [unseen[k] for k in range(0, len(unseen), max(1, len(unseen) // objects))][:objects]
    refs = [Image.open(_corpus_photos(world, c.slug)[0]).convert("RGB") for c in picks]
    cell = 32 * scale
    grid = Image.new("RGB", ((1 + seeds * len(pipes)) * cell, 14 + len(picks) * cell), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((2, 1), "reference", fill="black")
    for r, ref in enumerate(refs):
        grid.paste(ref.resize((cell, cell), Image.Resampling.NEAREST), (0, 14 + r * cell))
    for m, (name, pipe) in enumerate(pipes.items()):
        draw.text((cell * (1 + m * seeds) + 2, 1), f"{name}: name + reference", fill="black")
        kwargs = {"ref_guidance": ref_guidance} if ref_guidance is not None and hasattr(pipe.cfg, "ref_guidance") else {}
        rows = [(PROMPT_TEMPLATE.format(name=c.name), ref, s) for c, ref in zip(picks, refs, strict=True) for s in range(seeds)]
        out = tensor_to_images(pipe.sample_many([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                                steps=steps, guidance=guidance, **kwargs))
        for k, im in enumerate(out):
            r, j = divmod(k, seeds)
            grid.paste(im.resize((cell, cell), Image.Resampling.NEAREST), (cell * (1 + m * seeds + j), 14 + r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="rendered world directory (WorldConfig(), the evaluator's world)")
    p.add_argument("--v1", default=None, help="a v1 world-sd directory to compare with")
    p.add_argument("--v2", default=str(GENERATOR_DIR), help="v2 world-sd directory (default: the committed assets)")
    p.add_argument("--evaluator", default=str(EVALUATOR_WEIGHTS))
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (the committed evaluation uses 20)")
    p.add_argument("--guidance", type=float, default=3.0, help="text guidance (world-sd's default)")
    p.add_argument("--ref-guidance", type=float, default=None, help="v2 reference guidance (default: its config)")
    p.add_argument("--ref-init-strength", type=float, default=None,
                   help="v2: start sampling from the reference noised to this fraction (default: its config)")
    p.add_argument("--wrong", action="store_true", help="also measure name + a wrong (sibling) reference")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write go-no-go.json here (and reuse v1's numbers from it)")
    p.add_argument("--grid", type=Path, default=None, help="save a reference | v1 | v2 grid PNG here")
    p.add_argument("--v1-results", type=Path, default=None,
                   help="take v1's metrics from an earlier go-no-go.json (same settings) instead of measuring again")
    args = p.parse_args(argv)

    from generator_service.world_sd import load_pipeline
    from realrag.world.train_evaluator import WorldEvaluator

    torch.set_num_threads(args.threads)
    world = World.load(args.world)
    evaluator = WorldEvaluator.load(args.evaluator)
    seeds = list(range(args.seeds))
    results: dict[str, dict] = {}
    pipes = {name: load_pipeline(path) for name, path in (("v1", args.v1), ("v2", args.v2)) if path}
    if args.ref_init_strength is not None and "v2" in pipes:
        pipes["v2"].cfg.ref_init_strength = args.ref_init_strength
    if args.v1_results:
        results["v1"] = json.loads(args.v1_results.read_text())["results"]["v1"]
    for name, pipe in pipes.items():
        if name not in results:
            results[name] = evaluate_model(pipe, world, evaluator, seeds, steps=args.steps, guidance=args.guidance,
                                           ref_guidance=args.ref_guidance, wrong=args.wrong)[0]
    print(table(results))
    report: dict = {"results": results, "settings": {k: str(v) for k, v in vars(args).items()}}
    if "v2" in results:
        report["gates"] = verdict(results.get("v1"), results["v2"])
        go = all(report["gates"].values())
        print("\n".join(f"- {k}: {'pass' if v else 'FAIL'}" for k, v in report["gates"].items()))
        print(f"verdict: {'GO' if go else 'NO-GO'}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "go-no-go.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.grid:
        path = save_grid(world, pipes, args.grid, steps=args.steps, guidance=args.guidance, ref_guidance=args.ref_guidance)
        print(f"grid: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

