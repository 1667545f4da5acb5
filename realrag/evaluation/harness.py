"""`realrag eval`: generate with every arm at fixed seeds and measure realism, alignment, accuracy.

For each prompt set and arm, each prompt is generated with the same seeds; the arm decides the
references (none, base CLIP, or a trained retriever; top-k from the corpus). Metrics per set and
arm: FID and KID against the real images of the set's classes (named feature space), CLIP-T,
CLIP-I against the real images of the prompt's class, identity accuracy from a classifier;
prompt-level bootstrap intervals, paired differences between arms (``metrics.INTERVAL_METHOD``),
retrieval recall@1/@5, and reference sensitivity: each prompt generated once more with a photo of
its own object (right), of another object (wrong) and with none, plus each arm's outputs split by
whether its reference showed the right object. The same code runs on the synthetic world and on a
user's ImageFolder data with real weights.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realrag.evaluation.data import ImageFolder, PromptItem, load_prompts, template_prompts
from realrag.evaluation.features import build_classifier, build_feature_space
from realrag.evaluation.metrics import (
    INTERVAL_METHOD,
    ArmScores,
    clip_scores,
    retrieval_recall,
    summarize_set,
)
from realrag.evaluation.report import bar_plot, image_grid, relative_paths, write_json, write_markdown
from realrag.evaluation.retrieval import ArmRetriever, ArmSpec
from realrag.evaluation.sensitivity import PROBES, arm_splits, measure, probe_references

DEFAULT_PAIRS = [("reflective", "standard"), ("reflective", "zero_shot"), ("reflective", "no_rag"),
                 ("standard", "zero_shot"), ("standard", "no_rag"), ("zero_shot", "no_rag")]


@dataclass
class EvalConfig:
    out_dir: Path
    model: str  # generator model key (generator_service registry)
    corpus: Path  # retrieval database, ImageFolder
    real: Path  # real reference images (FID/KID, CLIP-I), ImageFolder, same class folders
    prompt_sets: dict[str, Path | None]  # set name -> prompts JSONL (None: one template prompt per real class)
    arms: list[ArmSpec]
    retriever_model: str = "ViT-B-32"
    retriever_pretrained: str | None = None
    scorer_model: str | None = None  # default: the retriever's base model
    scorer_pretrained: str | None = None
    features: str = "clip"
    classifier: str = "clip-zeroshot"
    images_per_prompt: int = 4
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    ip_scale: float | None = None
    width: int | None = None
    height: int | None = None
    top_k: int = 1
    n_bootstrap: int = 200
    confidence: float = 0.95
    device: str = "auto"
    grid_rows: int = 6
    save_images: bool = True
    reference_probe: bool = True  # generate each prompt with a right and a wrong reference (2 calls per prompt)
    title: str = "RealRAG evaluation"
    command: str = ""
    pairs: list[tuple[str, str]] = field(default_factory=lambda: list(DEFAULT_PAIRS))

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        names = [a.name for a in self.arms]
        if not names:
            raise ValueError("at least one arm is required")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate arm names in {names}")
        if self.images_per_prompt < 1 or self.top_k < 1:
            raise ValueError("images_per_prompt and top_k must be >= 1")
        if not self.prompt_sets:
            raise ValueError("at least one prompt set is required")


def load_generator(model: str, device: str):
    from generator_service.families import family_module
    from services.registry import get_spec

    try:
        spec = get_spec(model)
    except KeyError:
        raise ValueError(f"unknown generator model key {model!r} (see services/models.toml)") from None
    return spec, family_module(spec).load(spec, device)


def run_evaluation(cfg: EvalConfig, generator=None, spec=None, log=print) -> dict:
    """Run the whole evaluation and write its outputs under ``cfg.out_dir``; return the result dict.

    ``generator``/``spec`` may be passed in (an already loaded model); otherwise ``cfg.model`` is
    loaded from the registry."""
    from generator_service.families.base import GenerationInputs
    from retriever_service.encoder import ClipEncoder

    t0 = time.time()
    from generator_service.families.common import auto_device

    device = auto_device(cfg.device)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    corpus, real = ImageFolder(cfg.corpus), ImageFolder(cfg.real)
    names = {**corpus.class_names(), **real.class_names()}
    known = set(corpus.classes) & set(real.classes)
    sets: dict[str, list[PromptItem]] = {}
    for set_name, path in cfg.prompt_sets.items():
        sets[set_name] = load_prompts(path, known) if path else template_prompts(sorted(known), names)

    if generator is None:
        spec, generator = load_generator(cfg.model, device)
    elif spec is None:
        from services.registry import get_spec

        spec = get_spec(cfg.model)
    steps = cfg.steps or spec.default_steps
    guidance = cfg.guidance if cfg.guidance is not None else spec.default_guidance
    ip_scale = cfg.ip_scale if cfg.ip_scale is not None else spec.default_ip_scale
    width, height = cfg.width or spec.default_width, cfg.height or spec.default_height
    seeds = [cfg.seed + j for j in range(cfg.images_per_prompt)]

    scorer = ClipEncoder(cfg.scorer_model or cfg.retriever_model,
                         cfg.scorer_pretrained if cfg.scorer_model else cfg.retriever_pretrained, device=device)
    features = build_feature_space(cfg.features, scorer=scorer, device=device)
    all_classes = sorted(set(corpus.classes) | set(real.classes))
    classifier = build_classifier(cfg.classifier, all_classes, names, scorer=scorer, device=device)
    log(f"[eval] generator {cfg.model}; features: {features.name}; classifier: {classifier.name}; scorer: {scorer.id}")

    retrievers = {a.name: ArmRetriever(a, cfg.retriever_model, cfg.retriever_pretrained, corpus, device)
                  for a in cfg.arms if a.retrieves}
    arm_sources = {a.name: ("no retrieval" if not a.retrieves else retrievers[a.name].source) for a in cfg.arms}

    # references per (set, arm, prompt) and retrieval recall
    retrieval: dict[str, dict] = {name: {"by_set": {}} for name in retrievers}
    refs: dict[tuple[str, str, int], list[int]] = {}
    for set_name, items in sets.items():
        queries = [it.prompt for it in items]
        for name, r in retrievers.items():
            ranked = r.search(queries, max(cfg.top_k, 5))
            retrieval[name]["by_set"][set_name] = retrieval_recall(
                [[r.corpus_classes[i] for i in row] for row in ranked], [it.cls for it in items])
            for k, row in enumerate(ranked):
                refs[(set_name, name, k)] = [int(i) for i in row[: cfg.top_k]]
    first_set = next(iter(sets))
    for name in retrieval:
        retrieval[name].update(retrieval[name]["by_set"][first_set])

    # generation (identical conditioning is generated once and shared between arms and probes)
    cache: dict[tuple, list] = {}
    generated: dict[tuple[str, str], list] = {}
    n_calls = 0
    t_gen = time.time()

    def generate(it: PromptItem, ref_ids: list[int]) -> list:
        nonlocal n_calls
        key = (it.prompt, tuple(ref_ids))
        if key not in cache:
            ref_images = [corpus.open(corpus.entries[i][1]) for i in ref_ids]
            cache[key] = generator.generate(GenerationInputs(
                prompt=it.prompt, seeds=seeds, steps=steps, guidance=guidance, width=width, height=height,
                references=ref_images, reference_labels=[names[corpus.entries[i][0]] for i in ref_ids],
                ip_scale=ip_scale))
            n_calls += 1
        return cache[key]

    probing = cfg.reference_probe and getattr(generator, "max_references", 1) > 0
    probe_refs = {s: probe_references(items, corpus, cfg.seed) for s, items in sets.items()} if probing else {}
    probed: dict[tuple[str, str], list] = {}
    for set_name, items in sets.items():
        for arm in cfg.arms:
            generated[(set_name, arm.name)] = [im for k, it in enumerate(items)
                                               for im in generate(it, refs.get((set_name, arm.name, k), []))]
        for probe_name, per_prompt in probe_refs.get(set_name, {}).items():
            probed[(set_name, probe_name)] = [im for it, ids in zip(items, per_prompt, strict=True) for im in generate(it, ids)]
        log(f"[eval] generated set {set_name!r}: {len(items)} prompts x {len(cfg.arms)} arms"
            f"{' + reference probes' if probing else ''} ({n_calls} generator calls so far, {time.time() - t_gen:.0f}s)")

    # metrics
    result: dict = {}
    deltas = {}
    sensitivity: dict[str, dict] = {}
    corpus_classes = [c for c, _ in corpus.entries]
    real_emb_cache: dict[str, np.ndarray] = {}

    def real_emb(cls: str) -> np.ndarray:
        if cls not in real_emb_cache:
            real_emb_cache[cls] = scorer.encode_images(real.images(cls))
        return real_emb_cache[cls]

    for set_name, items in sets.items():
        classes = sorted({it.cls for it in items})
        real_groups = np.array([g for g, c in enumerate(classes) for _ in real.images(c)])
        real_feats = features.extract([im for c in classes for im in real.images(c)])
        centroids = {c: real_feats.numpy()[real_groups == g].mean(0) for g, c in enumerate(classes)}
        per_image_cls = [it.cls for it in items for _ in seeds]
        prompt_emb = np.repeat(scorer.encode_text([it.prompt for it in items]), len(seeds), axis=0)
        arms_scores, preds = {}, {}
        for arm in cfg.arms:
            images = generated[(set_name, arm.name)]
            gen_emb = scorer.encode_images(images)
            clip_t, clip_i = clip_scores(gen_emb, prompt_emb, [real_emb(c) for c in per_image_cls])
            preds[arm.name] = classifier.predict(images)
            arms_scores[arm.name] = ArmScores(features.extract(images), clip_t, clip_i, np.array(
                [p == c for p, c in zip(preds[arm.name], per_image_cls, strict=True)]))
        summary = summarize_set(real_feats, arms_scores, cfg.n_bootstrap, cfg.confidence, cfg.seed, pairs=cfg.pairs,
                                groups=np.repeat(np.arange(len(items)), len(seeds)), real_groups=real_groups)
        result[set_name] = summary["arms"]
        deltas[set_name] = summary["deltas"]

        by_arm: dict[str, dict] = {}
        for arm in cfg.arms:
            ids = [refs.get((set_name, arm.name, k), []) for k in range(len(items))]
            feats = arms_scores[arm.name].fake_features
            by_arm[arm.name] = {
                split: {**measure(feats, preds[arm.name], per_image_cls, len(seeds), ks, wrong, centroids), "prompts": len(ks)}
                for split, (ks, wrong) in arm_splits(ids, items, corpus_classes).items()}
        probe: dict = {}
        for name in PROBES if probing else ():
            images = probed[(set_name, name)]
            wrong = [corpus_classes[ids[0]] if ids and name == "wrong" else None for ids in probe_refs[set_name][name]]
            probe[name] = measure(features.extract(images), classifier.predict(images), per_image_cls, len(seeds),
                                  list(range(len(items))), wrong, centroids)
        if probe:
            acc = {name: float(probe[name]["accuracy"] or 0.0) for name in PROBES}  # every probe has outputs
            probe["right_minus_wrong_accuracy"] = acc["right"] - acc["wrong"]
            probe["right_minus_none_accuracy"] = acc["right"] - acc["none"]
        sensitivity[set_name] = {"probe": probe, "arms": by_arm}
        log(f"[eval] {set_name}: " + "; ".join(f"{a} FID {v['fid']:.2f} acc {v['accuracy']:.3f}"
                                              for a, v in summary["arms"].items()))

    result["retrieval"] = retrieval
    result["deltas"] = deltas
    result["reference_sensitivity"] = sensitivity
    result["interval_method"] = INTERVAL_METHOD
    result["setup"] = {
        "generator": cfg.model, "feature_space": features.name, "classifier": classifier.name, "scorer": scorer.id,
        "arm_sources": arm_sources, "prompt_sets": list(sets), "set_sizes": {k: len(v) for k, v in sets.items()},
        "images_per_prompt": cfg.images_per_prompt, "seeds": seeds, "steps": steps, "guidance": guidance,
        "ip_scale": ip_scale, "width": width, "height": height, "top_k": cfg.top_k, "bootstrap": cfg.n_bootstrap,
        "confidence": cfg.confidence, "corpus": str(cfg.corpus), "real": str(cfg.real),
        "corpus_images": len(corpus.entries), "device": device, "generator_calls": n_calls, "reference_probe": probing,
        "retrieval_note": f"top-level recall = the {first_set!r} set; exact cosine search over the corpus",
    }
    result["setup"] = relative_paths(result["setup"])
    result["command"] = cfg.command
    result["seconds"] = round(time.time() - t0, 1)
    result["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    # outputs
    arm_names = [a.name for a in cfg.arms]
    rows = []
    items = sets[first_set]
    shown = list(dict.fromkeys(int(i) for i in np.linspace(0, len(items) - 1, min(cfg.grid_rows, len(items))).round()))
    n_show = min(3, len(seeds))
    for k in shown:
        it = items[k]
        rows.append({
            "prompt": it.prompt, "real": real.images(it.cls)[0],
            "refs": {a: (corpus.open(corpus.entries[refs[(first_set, a, k)][0]][1])
                         if (first_set, a, k) in refs and refs[(first_set, a, k)] else None) for a in arm_names},
            "outputs": {a: generated[(first_set, a)][k * len(seeds): k * len(seeds) + n_show] for a in arm_names},
        })
    grid_path = image_grid(rows, arm_names, out / "grid.png")
    bars_path = bar_plot(result, out / "bars.png")
    images_md = {"grid": grid_path.name, "metrics": bars_path.name}
    if probing:
        probe_rows = [{"prompt": row["prompt"], "real": row["real"], "outputs": {
            p: probed[(first_set, p)][k * len(seeds): k * len(seeds) + n_show] for p in PROBES}, "refs": {
            p: (corpus.open(corpus.entries[probe_refs[first_set][p][k][0]][1]) if probe_refs[first_set][p][k] else None)
            for p in PROBES}} for k, row in zip(shown, rows, strict=True)]
        images_md["reference sensitivity: right / wrong / no reference"] = image_grid(
            probe_rows, list(PROBES), out / "reference_grid.png").name
    if cfg.save_images:
        for (set_name, arm_name), images in generated.items():
            folder = out / "samples" / set_name / arm_name
            folder.mkdir(parents=True, exist_ok=True)
            for j, im in enumerate(images):
                it = sets[set_name][j // len(seeds)]
                im.save(folder / f"{it.cls}__seed{seeds[j % len(seeds)]}.png")
    write_json(result, out / "results.json")
    write_markdown(result, out / "report.md", cfg.title, images_md)
    log(f"[eval] done in {result['seconds']:.0f}s -> {out}/results.json, report.md, grid.png, bars.png"
        f"{', reference_grid.png' if probing else ''}")
    return result
