"""The novel-objects benchmark: RealRAG's claim, reproduced in a world where "unseen" is literal.

Full run (train everything, evaluate all arms on unseen and seen classes; <= 60 min on 2 cores):

    python benchmarks/novel_objects.py                    # -> benchmarks/results/novel_objects.json
                                                          #    docs/results/novel-objects.md (+ PNGs)
    python benchmarks/novel_objects.py --install-assets   # also refresh realrag/world/assets/

Quick run (same code paths, tiny settings, a few minutes; checks plumbing, not numbers):

    python benchmarks/novel_objects.py --quick --out /tmp/novel-quick

Stages: render the world -> base world CLIP (zero-shot arm) -> evaluator -> world-sd v1 (seen
classes only, the base) -> world-sd v2 fine-tuned from it on the test condition (invented names,
generic prompts, the reference photo as input; ``realrag.world.train_generator_v2``) -> standard and
reflective retrievers (``realrag.training``, via ``train_arm``, mining with v2) -> ``realrag eval``
with arms no_rag / zero_shot / standard / reflective. ``--install-assets`` installs v2 as world-sd
(the v1 base is not kept: the assets stay within 20 MB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from realrag.world import ASSETS_DIR, CLIP_CONFIG  # noqa: E402
from realrag.world.catalog import PROMPT_TEMPLATE, WorldConfig  # noqa: E402
from realrag.world.cli import FULL_STEPS  # noqa: E402

RESULTS_JSON = REPO / "benchmarks" / "results" / "novel_objects.json"
DOCS_DIR = REPO / "docs" / "results"
ARMS = ("no_rag", "zero_shot", "standard", "reflective")


@dataclass(frozen=True)
class Budget:
    """Every knob that trades time for quality, in one place (full vs quick)."""

    world: WorldConfig
    clip_steps: int
    evaluator_steps: int
    generator_steps: int
    generator_time_budget_s: float | None
    generator_v2_steps: int
    identity_steps: int
    identity_batch: int
    retriever_epochs: int
    retriever_batch_size: int
    retriever_lr: float
    sample_steps: int
    images_per_prompt: int
    eval_steps: int
    bootstrap: int


FULL = Budget(world=WorldConfig(), clip_steps=FULL_STEPS["clip"], evaluator_steps=FULL_STEPS["evaluator"],
              generator_steps=FULL_STEPS["generator"], generator_time_budget_s=None,
              generator_v2_steps=FULL_STEPS["generator_v2"], identity_steps=300, identity_batch=256,
              retriever_epochs=60, retriever_batch_size=8, retriever_lr=2e-4,
              sample_steps=20, images_per_prompt=6, eval_steps=20, bootstrap=200)
QUICK = Budget(world=WorldConfig.quick(), clip_steps=20, evaluator_steps=20, generator_steps=6,
               generator_time_budget_s=None, generator_v2_steps=3, identity_steps=2, identity_batch=16,
               retriever_epochs=1, retriever_batch_size=8, retriever_lr=2e-4,
               sample_steps=2, images_per_prompt=2, eval_steps=2, bootstrap=20)


def train_arm(kind: str, *, data_dir: Path, generator, generator_key: str, clip_config: Path, clip_weights: Path,
              work_dir: Path, epochs: int, batch_size: int, lr: float, sample_steps: int, seed: int = 0,
              held_out_objects: list[str] | None = None, output: Path | None = None, **recipe):
    """Train one retriever arm with the issue-4 pipeline (``realrag.training``) and return the
    pipeline's result (``.weights``: its checkpoint; ``.samples``/``.mined``: what mining saw and picked).
    ``standard`` = in-batch negatives only; ``reflective`` = plus the negatives mined with
    ``generator``. Both arms share the work dir (samples, mining cache). ``held_out_objects``: kept
    out of training and measured (the tuning split); ``recipe``: more ``TrainConfig`` fields."""
    from realrag.training import TrainConfig
    from realrag.training.pipeline import run_pipeline

    if kind not in ("standard", "reflective"):
        raise ValueError(f"unknown retriever arm {kind!r}")
    config = TrainConfig(
        data=data_dir, generator=generator_key, templates=[PROMPT_TEMPLATE.replace("{name}", "{label}")],
        held_out_fraction=0.0, held_out_objects=held_out_objects, encoder_model=str(clip_config),
        encoder_pretrained=str(clip_weights), negatives="reflective" if kind == "reflective" else "inbatch",
        compare_standard=False, epochs=epochs, batch_size=batch_size, lr=lr, sample_steps=sample_steps, device="cpu",
        generator_device="cpu", precision="fp32", seed=seed, work_dir=work_dir,
        output=output or work_dir / f"export-{kind}", **recipe,
    )
    result = run_pipeline(config, generator=generator)
    if result.weights is None:
        raise RuntimeError(f"the retriever pipeline exported nothing for arm {kind!r}")
    return result


def reference_check(world, generators: dict[str, Path], evaluator: Path, *, seeds: int, steps: int) -> dict:
    """Issue 14's go/no-go (``realrag.world.go_no_go``) on this run's v1 base and v2: does the generator
    draw the object of its reference? All unseen objects x ``seeds``, all seen objects, the run's evaluator."""
    from generator_service.world_sd import load_pipeline
    from realrag.world.go_no_go import evaluate_model, verdict
    from realrag.world.train_evaluator import WorldEvaluator

    ev = WorldEvaluator.load(evaluator)
    results = {name: evaluate_model(load_pipeline(path), world, ev, list(range(seeds)), steps=steps, guidance=3.0,
                                    ref_guidance=None, wrong=True, log=_log)[0] for name, path in generators.items()}
    return {"results": results, "gates": verdict(results["v1"], results["v2"]), "seeds": seeds, "steps": steps}


# What the paper leaves open, tuned per arm on held-out *seen* objects (never an unseen one): how many
# mined negatives each prompt's sample contributes, and a fixed vs learnable temperature. Only the
# text tower trains: the corpus index (image tower) is shared by every arm and stays as ingested.
TUNE_GRID = {"standard": [{"temperature": t} for t in (None, 0.05)],
             "reflective": [{"negatives_per_sample": n, "temperature": t} for n in (1, 2, 4) for t in (None, 0.05)]}


def tune_arms(world, *, log=print, **arm_kwargs) -> dict:
    """Per arm, the recipe with the best recall@1 on a validation split of seen objects (every fourth
    seen object, kept out of training; ties: fewer top-1 hits on a mined negative). The final arms
    then train on all objects with it."""
    val = [c.slug for c in world.seen][::4]
    work = arm_kwargs.pop("work_dir")
    out: dict = {"validation_objects": val, "trials": {}, "chosen": {}}
    for kind, grid in TUNE_GRID.items():
        trials = []
        for n, recipe in enumerate(grid):
            r = train_arm(kind, work_dir=work, held_out_objects=val, output=work / "tune" / f"{kind}-{n}",
                          **arm_kwargs, **recipe)
            m = r.report["arms"][kind]["held_out"]
            trials.append({"recipe": recipe, "recall@1": m["recall@1"], "recall@5": m.get("recall@5"),
                           "top1_is_reflective": m.get("top1_is_reflective")})
            log(f"[tune] {kind} {recipe}: val recall@1 {m['recall@1']}")
        best = max(trials, key=lambda t: (t["recall@1"] or 0, -(t["top1_is_reflective"] or 0)))
        out["trials"][kind], out["chosen"][kind] = trials, best["recipe"]
    return out


def mining_examples(result, world, path: Path, rows: int = 8, scale: int = 3) -> dict:
    """What reflective mining picked, for unseen objects: a grid (real photo | the generator's sample
    | the mined negative, the real photo nearest to that sample among other objects) and how often the
    top negative is a sibling of the same product line, another unseen object, or a seen object."""
    from PIL import Image, ImageDraw

    classes = {c.slug: c for c in world.classes}
    unseen = {c.slug for c in world.unseen}
    ds, mined, samples = result.dataset, result.mined, result.samples
    prompts = [p for p in ds.prompts if p.object_id in unseen and mined.negatives.get(p.id)]
    kinds = {"sibling": 0, "other unseen": 0, "other seen": 0}
    for p in prompts:
        for n in mined.negatives[p.id]:
            neg = classes[ds.image(n["image_id"]).object_id]
            kinds["sibling" if neg.line == classes[p.object_id].line else
                  "other unseen" if neg.slug in unseen else "other seen"] += 1
    total = sum(kinds.values()) or 1
    picks = prompts[:: max(1, len(prompts) // rows)][:rows]
    cell, label_w = 32 * scale, 200
    grid = Image.new("RGB", (label_w + 3 * cell, 14 + len(picks) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for k, head in enumerate(("real photo", "generated", "mined negative")):
        draw.text((label_w + k * cell + 2, 1), head, fill="black")
    for r, p in enumerate(picks):
        neg = mined.negatives[p.id][0]
        sample = samples.paths(p.id)[neg.get("sample", 0)]
        y = 14 + r * cell
        for k, file in enumerate((ds.image(p.positives[0]).path, sample, ds.image(neg["image_id"]).path)):
            grid.paste(Image.open(file).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                       (label_w + k * cell, y))
        draw.text((2, y + 4), classes[p.object_id].name, fill="black")
        draw.text((2, y + 20), "negative: " + classes[ds.image(neg["image_id"]).object_id].name, fill="gray")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return {"prompts": len(prompts), "negatives": total, "share": {k: round(v / total, 3) for k, v in kinds.items()}}


def _log(msg: str) -> None:
    print(msg, flush=True)


def run(out: Path, budget: Budget, *, quick: bool, seed: int, threads: int, write_results: bool,
        install_assets: bool, command: str) -> dict:
    import torch

    from generator_service.families import world as world_family
    from realrag.evaluation.harness import EvalConfig, run_evaluation
    from realrag.evaluation.retrieval import ArmSpec
    from realrag.world.dataset import render_world
    from realrag.world.train_clip import train_world_clip
    from realrag.world.train_evaluator import train_world_evaluator
    from realrag.world.train_generator import train_world_generator
    from realrag.world.train_generator_v2 import train_world_generator_v2
    from services.registry import get_spec

    torch.set_num_threads(threads)
    t0 = time.time()
    timings: dict[str, float] = {}
    stats: dict[str, dict] = {}

    def stage(name: str, t: float) -> None:
        timings[name] = round(time.time() - t, 1)
        _log(f"[bench] {name}: {timings[name]:.0f}s (total {time.time() - t0:.0f}s)")

    out.mkdir(parents=True, exist_ok=True)
    models = out / "models"
    models.mkdir(exist_ok=True)
    t = time.time()
    world = render_world(out / "world", budget.world, log=_log)
    stage("render", t)

    clip_config = models / CLIP_CONFIG.name
    shutil.copyfile(CLIP_CONFIG, clip_config)
    clip_weights = models / "world-clip.safetensors"
    t = time.time()
    stats["clip"] = train_world_clip(world, clip_weights, config_path=clip_config, steps=budget.clip_steps,
                                     batch_size=32 if quick else 128, seed=seed, threads=threads, log=_log)
    stage("train_clip", t)

    evaluator = models / "world-evaluator.safetensors"
    t = time.time()
    stats["evaluator"] = train_world_evaluator(world, evaluator, steps=budget.evaluator_steps, seed=seed,
                                               threads=threads, log=_log)
    stage("train_evaluator", t)

    base_dir, gen_dir = models / "world-sd-v1", models / "world-sd"
    t = time.time()
    stats["generator_v1"] = train_world_generator(
        world, base_dir, steps=budget.generator_steps,
        batch_size=8 if quick else 32, seed=seed, threads=threads, time_budget_s=budget.generator_time_budget_s,
        log=_log)
    stage("train_generator_v1", t)
    t = time.time()
    stats["generator"] = train_world_generator_v2(
        world, gen_dir, init=base_dir, steps=budget.generator_v2_steps, batch_size=8 if quick else 32,
        identity_steps=budget.identity_steps, identity_batch=budget.identity_batch, seed=seed,
        threads=threads, log=_log)
    stage("train_generator_v2", t)
    t = time.time()
    go_no_go = reference_check(world, {"v1": base_dir, "v2": gen_dir}, evaluator, seeds=2 if quick else 3,
                               steps=2 if quick else 10)
    stage("go_no_go", t)

    spec = get_spec("world-sd").model_copy(update={"source": str(gen_dir)})
    generator = world_family.load(spec, "cpu")
    arm_kwargs = dict(data_dir=world.split_dir("train"), generator=generator, generator_key="world-sd",
                      clip_config=clip_config, clip_weights=clip_weights, work_dir=out / "retrievers",
                      epochs=budget.retriever_epochs, batch_size=budget.retriever_batch_size, lr=budget.retriever_lr,
                      sample_steps=budget.sample_steps, seed=seed)
    t = time.time()
    tuning = tune_arms(world, **arm_kwargs)
    stage("tune_retrievers", t)
    checkpoints, trained = {}, {}
    for kind in ("standard", "reflective"):
        t = time.time()
        trained[kind] = train_arm(kind, **arm_kwargs, **tuning["chosen"][kind])
        checkpoints[kind] = trained[kind].weights
        stage(f"train_{kind}", t)
    mining = mining_examples(trained["reflective"], world, out / "eval" / "mining.png")

    t = time.time()
    cfg = EvalConfig(
        out_dir=out / "eval", model="world-sd", corpus=world.split_dir("corpus"), real=world.split_dir("test"),
        prompt_sets={"unseen": world.prompts_file("unseen"), "seen": world.prompts_file("seen")},
        arms=[ArmSpec("no_rag"), ArmSpec("zero_shot"), ArmSpec("standard", checkpoints["standard"]),
              ArmSpec("reflective", checkpoints["reflective"])],
        retriever_model=str(clip_config), retriever_pretrained=str(clip_weights),
        features=f"world-evaluator:{evaluator}", classifier=f"world-evaluator:{evaluator}",
        images_per_prompt=budget.images_per_prompt, seed=seed, steps=budget.eval_steps,
        n_bootstrap=budget.bootstrap, device="cpu", title="Novel objects (synthetic world)", command=command)
    result = run_evaluation(cfg, generator=generator, spec=spec, log=_log)
    stage("evaluate", t)

    result["seconds"] = round(time.time() - t0, 1)
    result["command"] = command
    result["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    result["stages_seconds"] = timings
    result["training"] = stats
    result["mining"] = mining
    result["tuning"] = tuning
    result["go_no_go"] = go_no_go
    result["world"] = {"config": budget.world.as_dict(), "classes": len(world.classes), "seen": len(world.seen),
                       "unseen": len(world.unseen)}
    result["budget"] = {k: (v if not isinstance(v, WorldConfig) else "see world.config")
                        for k, v in budget.__dict__.items()}
    (out / "novel_objects.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    if write_results:
        publish(result, out / "eval")
    if install_assets:
        install(models, result)
    _log(f"[bench] done in {result['seconds']:.0f}s -> {out}")
    return result


WORLD_NOTE = """\
## The world

A procedural world of invented gadgets (`realrag/world`): each object is a body shape, a body colour,
a pattern in a second colour and one or two parts in an accent colour, photographed at 32 px with a
random pose, scale, position, background, lighting and sensor noise. Objects come in product lines of
near-duplicates that differ in exactly one attribute (pattern colour, accent colour, pattern, or one
part). Names are invented ("Brand Line Variant"), drawn independently of the design; variants of a
line share "Brand Line", as real product families do. Unseen objects are 4 whole lines (novel
objects) plus one variant of each other line (a novel variant next to seen siblings).

- **world-sd** (the generator) trained on seen objects only: v1, the 36 seen catalogue objects by
  name plus anonymous random designs (never within one attribute of an unseen object) prompted
  generically, each with another photo of the same object as reference (dropped at random); then
  **v2**, fine-tuned from v1 on the test condition: anonymous designs named with invented words
  (never the words of an unseen name), generic prompts, now and then a seen name on another object's
  photo, text dropped while the reference is kept. v2 reads the reference three ways: the photo as
  extra UNet input channels, spatial tokens through a resampler (decoupled cross-attention), and a
  pooled embedding (timestep); its reference encoder was trained alone for identity (InfoNCE over
  two photos of one object) and then frozen. Sampling uses two-way guidance (reference weight 5,
  text weight 3). Its text encoder never read an unseen name and its UNet never drew an unseen object.
- **world CLIP** (the zero-shot arm, and the base the retrievers fine-tune) trained on "web" photos
  of all objects whose captions mostly describe attributes, name the object only 30 % of the time,
  and are about another object 15 % of the time.
- **standard / reflective** retrievers: the text tower of the world CLIP fine-tuned by
  `realrag.training` (in-batch negatives; plus one reflective negative per prompt mined
  with world-sd), on photos and names of all objects. Batch size 8: with 64 objects that keeps the
  share of in-batch negatives that are near-duplicates close to a real fine-grained data set's.
- **evaluator** (accuracy; FID/KID feature space "world-evaluator") trained separately on real
  photos of all objects; never used for retrieval. Real photos for FID/KID and CLIP-I are a held-out
  split, disjoint from the retrieval corpus.
"""


def _verdict(d: dict, metric: str, lower_is_better: bool) -> str:
    lo, hi = d[metric]["ci"]
    if lo > 0 or hi < 0:
        better = (hi < 0) if lower_is_better else (lo > 0)
        return "better" if better else "worse"
    return "no significant difference"


def findings(result: dict) -> list[str]:
    """Plain statements derived from the numbers (so a rerun rewrites them honestly). Identity accuracy
    and KID (unbiased) lead; FID is FID-infinity (bias-corrected); paired intervals resample prompts."""
    out = []
    u = result["unseen"]
    acc_seen = result.get("seen", {}).get("no_rag", {}).get("accuracy")
    fid_ratio = u["reflective"]["fid"] / u["no_rag"]["fid"] if u["no_rag"]["fid"] else float("nan")
    out.append(f"- Unseen objects, identity accuracy no RAG {u['no_rag']['accuracy']:.2f} -> reflective "
               f"{u['reflective']['accuracy']:.2f}" + (f" (seen objects without RAG: {acc_seen:.2f})" if acc_seen is not None else "")
               + f"; KID {u['no_rag']['kid']:.4f} -> {u['reflective']['kid']:.4f}; FID-infinity ratio reflective / no RAG "
               f"**{fid_ratio:.2f}** (goal <= 0.5: {'met' if fid_ratio <= 0.5 else 'not met'}).")
    deltas = result.get("deltas", {}).get("unseen", {})
    for pair in ("reflective - standard", "reflective - zero_shot", "standard - zero_shot", "zero_shot - no_rag"):
        if pair not in deltas:
            continue
        d = deltas[pair]
        out.append(f"- Unseen, {pair}: accuracy {d['accuracy']['delta']:+.3f} [{d['accuracy']['ci'][0]:+.3f}, "
                   f"{d['accuracy']['ci'][1]:+.3f}] ({_verdict(d, 'accuracy', False)}); KID {d['kid']['delta']:+.4f} "
                   f"[{d['kid']['ci'][0]:+.4f}, {d['kid']['ci'][1]:+.4f}] ({_verdict(d, 'kid', True)}); FID-infinity "
                   f"{d['fid']['delta']:+.2f} [{d['fid']['ci'][0]:+.2f}, {d['fid']['ci'][1]:+.2f}] ({_verdict(d, 'fid', True)}).")
    probe = result.get("reference_sensitivity", {}).get("unseen", {}).get("probe", {})
    if probe:
        gap = probe["right_minus_wrong_accuracy"]
        out.append(f"- Reference sensitivity (unseen, name + reference): accuracy with the right reference "
                   f"{probe['right']['accuracy']:.2f}, a wrong one {probe['wrong']['accuracy']:.2f}, none "
                   f"{probe['none']['accuracy']:.2f}; right - wrong = **{gap:+.2f}** (goal >= 0.3: {'met' if gap >= 0.3 else 'not met'}).")
    r = result.get("retrieval", {})
    if r:
        out.append("- Retrieval recall@1 on unseen prompts: " + ", ".join(
            f"{arm} {v['by_set'].get('unseen', {}).get('recall@1', float('nan')):.2f}" for arm, v in r.items())
            + "; on seen prompts: " + ", ".join(
            f"{arm} {v['by_set'].get('seen', {}).get('recall@1', float('nan')):.2f}" for arm, v in r.items()) + ".")
    s = result.get("seen")
    if s:
        out.append(f"- Seen objects (the generator knows them): accuracy {s['no_rag']['accuracy']:.2f} -> "
                   f"{s['reflective']['accuracy']:.2f}; KID {s['no_rag']['kid']:.4f} -> {s['reflective']['kid']:.4f}.")
    return out


def mining_note(mining: dict | None) -> str:
    if not mining:
        return ""
    share = mining["share"]
    return (f"For each prompt of an unseen object, the reflective negatives are the real photos nearest to what "
            f"world-sd drew, among other objects ({mining['negatives']} negatives over {mining['prompts']} unseen-object "
            f"prompts): a sibling of the same product line {share['sibling']:.0%}, another unseen object "
            f"{share['other unseen']:.0%}, a seen object {share['other seen']:.0%}. Rows below: the object's name, a "
            "real photo, the generator's sample and the negative mined from it.")


def go_no_go_note(check: dict | None) -> str:
    if not check:
        return ""
    from realrag.world.go_no_go import table

    gates = "; ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in check["gates"].items())
    return (f"Evaluator accuracy for the intended object, all unseen objects x {check['seeds']} seeds and all seen "
            f"objects, {check['steps']} DDIM steps (`python -m realrag.world.go_no_go` measures the same): v1 is this "
            "run's base generator, v2 the one fine-tuned from it (what `--install-assets` installs as world-sd).\n\n"
            + table(check["results"]) + f"\n\nGates: {gates}.")


def tuning_note(tuning: dict | None) -> str:
    if not tuning:
        return ""
    lines = [f"Validation split: {len(tuning['validation_objects'])} seen objects held out of retriever training "
             "(no unseen object takes part in tuning); the chosen recipe then trains on all objects.", "",
             "| arm | recipe | val recall@1 | val recall@5 | top-1 is a mined negative | chosen |", "|---|---|---:|---:|---:|---|"]
    for kind, trials in tuning["trials"].items():
        for t in trials:
            recipe = ", ".join(f"{k}={'learnable' if v is None else v}" for k, v in t["recipe"].items())
            lines.append(f"| {kind} | {recipe} | {t['recall@1']} | {t['recall@5']} | {t['top1_is_reflective']} | "
                         f"{'yes' if t['recipe'] == tuning['chosen'][kind] else ''} |")
    return "\n".join(lines)


def publish(result: dict, eval_dir: Path, notes: str = "") -> None:
    """Commit-ready outputs: the results JSON and docs/results/novel-objects.md with its images."""
    from realrag.evaluation.report import markdown_table, strict_json

    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(strict_json(result), indent=1, default=str) + "\n")
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(eval_dir / "grid.png", DOCS_DIR / "novel-objects-grid.png")
    shutil.copyfile(eval_dir / "bars.png", DOCS_DIR / "novel-objects-bars.png")
    if (eval_dir / "reference_grid.png").is_file():
        shutil.copyfile(eval_dir / "reference_grid.png", DOCS_DIR / "novel-objects-reference-grid.png")
    shutil.copyfile(eval_dir / "mining.png", DOCS_DIR / "novel-objects-mining.png")
    doc = [
        "# Novel objects: does retrieving real photos of an unseen object make it real?", "",
        f"Command: `{result['command']}`  ", f"Date: {result['date']}; wall time {result['seconds'] / 60:.1f} min "
        f"(2 CPU cores); stages (s): {result.get('stages_seconds')}", "",
        "## Findings", "", *findings(result), "", notes,
        "## Results", "", markdown_table(result),
        "![prompt | real photo | per arm: retrieved reference, outputs](novel-objects-grid.png)", "",
        "![metrics with 95% intervals, resampled by prompt](novel-objects-bars.png)", "",
        "![reference sensitivity: right reference | wrong reference | none](novel-objects-reference-grid.png)", "",
        "## Does world-sd follow its reference? (go/no-go)", "", go_no_go_note(result.get("go_no_go")), "",
        "## What reflective mining picked", "", mining_note(result.get("mining")), "",
        "![unseen object | real photo | the generator's sample | its mined negative](novel-objects-mining.png)", "",
        "## Retriever recipe, tuned on seen objects", "", tuning_note(result.get("tuning")), "",
        result.get("interval_method", ""), "", WORLD_NOTE,
    ]
    (DOCS_DIR / "novel-objects.md").write_text("\n".join(doc))


def install(models: Path, result: dict) -> None:
    """Copy freshly trained models over the committed assets (world-clip, evaluator, world-sd) and
    record how they were made in ``realrag/world/assets/training.json``."""
    ASSETS_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("world-clip.safetensors", "world-evaluator.safetensors"):
        shutil.copyfile(models / name, ASSETS_DIR / name)
    target = ASSETS_DIR / "world-sd"
    target.mkdir(exist_ok=True)
    for f in (models / "world-sd").iterdir():
        if f.is_file():
            shutil.copyfile(f, target / f.name)
    sizes = {str(p.relative_to(ASSETS_DIR)): p.stat().st_size for p in sorted(ASSETS_DIR.rglob("*")) if p.is_file()}
    card = {"command": result["command"], "date": result["date"], "training": result.get("training"),
            "world": result.get("world", {}).get("config"), "bytes": sizes, "total_bytes": sum(sizes.values())}
    (ASSETS_DIR / "training.json").write_text(json.dumps(card, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the plumbing in a few minutes")
    p.add_argument("--out", type=Path, default=None, help="work directory (default: .realrag/bench/novel-objects[-quick])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-publish", action="store_true", help="full run: do not overwrite the committed results")
    p.add_argument("--install-assets", action="store_true", help="copy the trained models into realrag/world/assets")
    args = p.parse_args(argv)
    budget = QUICK if args.quick else FULL
    out = args.out or REPO / ".realrag" / "bench" / ("novel-objects-quick" if args.quick else "novel-objects")
    command = "python benchmarks/novel_objects.py " + " ".join(shlex.quote(a) for a in argv)
    run(out, budget, quick=args.quick, seed=args.seed, threads=args.threads,
        write_results=not args.quick and not args.no_publish, install_assets=args.install_assets, command=command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
