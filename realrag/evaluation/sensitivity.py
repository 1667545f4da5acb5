"""Reference sensitivity: does the generator draw the object of the photo it is given?

Probe (a property of the generator, whatever the retriever): each prompt is generated with a corpus
photo of its own object (``right``), with a photo of another object (``wrong``: a fixed random
derangement of the set's classes) and with none. Per arm: the arm's outputs split by whether its
top-1 reference showed the prompt's object. Both are measured with the evaluator (identity
accuracy, feature distance to the true object, share of outputs showing the wrong reference's
object) by ``metrics.reference_sensitivity``.
"""

from __future__ import annotations

import numpy as np

from realrag.evaluation.data import ImageFolder, PromptItem
from realrag.evaluation.metrics import reference_sensitivity

PROBES = ("right", "wrong", "none")


def probe_references(items: list[PromptItem], corpus: ImageFolder, seed: int = 0) -> dict[str, list[list[int]]]:
    """Corpus indices per prompt for each probe: the first photo of the prompt's object (right), the
    first photo of another object (wrong), nothing (none)."""
    first: dict[str, int] = {}
    for i, (cls, _) in enumerate(corpus.entries):
        first.setdefault(cls, i)
    set_classes = sorted({it.cls for it in items} & set(first))
    pool = set_classes if len(set_classes) > 1 else sorted(first)
    shift = int(np.random.default_rng(seed).integers(1, len(pool))) if len(pool) > 1 else 0
    right, wrong = [], []
    for it in items:
        right.append([first[it.cls]] if it.cls in first else [])
        other = pool[(pool.index(it.cls) + shift) % len(pool)] if it.cls in pool else pool[0]
        wrong.append([first[other]] if other != it.cls else [])
    return {"right": right, "wrong": wrong, "none": [[] for _ in items]}


def arm_splits(ref_ids: list[list[int]], items: list[PromptItem], corpus_classes: list[str]) -> dict[str, tuple[list[int], list]]:
    """Prompts of an arm by what its top-1 reference showed: {split: (prompt indices, wrong class
    per prompt or None)}; splits right / wrong / none (no reference), empty ones left out."""
    out: dict[str, tuple[list[int], list]] = {p: ([], []) for p in PROBES}
    for k, (it, ids) in enumerate(zip(items, ref_ids, strict=True)):
        if not ids:
            split, wrong = "none", None
        else:
            shown = corpus_classes[ids[0]]
            split, wrong = ("right", None) if shown == it.cls else ("wrong", shown)
        out[split][0].append(k)
        out[split][1].append(wrong)
    return {p: v for p, v in out.items() if v[0]}


def measure(features, predicted: list[str], image_classes: list[str], per_prompt: int, prompts: list[int], wrong: list,
            centroids: dict[str, np.ndarray]) -> dict[str, float | None]:
    """``metrics.reference_sensitivity`` over the images of ``prompts`` (prompt-major rows,
    ``per_prompt`` seeds each); ``wrong``: the wrong reference's class per prompt, or None."""
    rows = [k * per_prompt + j for k in prompts for j in range(per_prompt)]
    return reference_sensitivity(np.asarray(features)[rows], [predicted[r] for r in rows],
                                 [image_classes[r] for r in rows], [w for w in wrong for _ in range(per_prompt)], centroids)
