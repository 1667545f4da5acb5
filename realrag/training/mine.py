"""Stage 2, mine: reflective negatives from the generator's own renders.

Every generated sample is embedded with the frozen base image encoder (method §9 #3) and searched
against the real corpus (exact cosine, like the index's exact search); its nearest real images that
are NOT of the prompt's object are the prompt's reflective negatives (§9 #6: a correct render must
not turn a true positive into a negative). Mined once, offline (§9 #4), cached per (generator
weights digest and sampling settings (both via the samples), encoder, data).

Embeddings are cached in chunks (``chunk-00000.npy`` …) so an interrupted embedding resumes at the
first missing chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import ProgressHook, StageTiming, progress, read_json, save_npy, write_json
from .config import TrainConfig, fingerprint
from .data import Dataset, open_image
from .sample import Samples

CHUNK = 256


def build_encoder(config: TrainConfig):
    from retriever_service.encoder import ClipEncoder

    return ClipEncoder(
        config.encoder_model,
        config.encoder_pretrained,
        device=config.device,
        batch_size=config.encoder_batch_size,
    )


def encoder_key(encoder) -> str:
    """Names the image space: the base encoder id plus the image tower's weights fingerprint."""
    from retriever_service.checkpoints import image_tower_fingerprint

    cached = getattr(encoder, "_realrag_image_key", None)
    if cached is None:
        cached = fingerprint(encoder.id, image_tower_fingerprint(encoder.model))
        encoder._realrag_image_key = cached  # hashing a ViT-B tower takes ~0.5 s; do it once
    return cached


def embed_files(
    encoder,
    paths: list[str],
    cache_dir: Path,
    desc: str,
    timing: StageTiming | None = None,
    hook: ProgressHook | None = None,
    stage: str = "embed",
) -> np.ndarray:
    """L2-normalised image embeddings of `paths` (in order), cached in resumable chunks."""
    manifest_path = cache_dir / "manifest.json"
    manifest = {"count": len(paths), "chunk": CHUNK, "paths": fingerprint(paths)}
    if read_json(manifest_path) != manifest:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for stale in cache_dir.glob("chunk-*.npy"):
            stale.unlink()
        write_json(manifest_path, manifest)
    chunks = []
    starts = range(0, len(paths), CHUNK)
    bar = progress(total=len(paths), desc=desc, unit="img")
    for number, start in enumerate(starts):
        file = cache_dir / f"chunk-{number:05d}.npy"
        batch = paths[start : start + CHUNK]
        if file.is_file():
            chunks.append(np.load(file))
            if timing:
                timing.cached += len(batch)
        else:
            vectors = encoder.encode_images([open_image(p) for p in batch]).astype(np.float32)
            save_npy(file, vectors)
            chunks.append(vectors)
            if timing:
                timing.done += len(batch)
            if hook:
                hook(stage, start + len(batch))
        bar.update(len(batch))
    bar.close()
    if not chunks:
        return np.zeros((0, encoder.dim), np.float32)
    return np.concatenate(chunks)


def embed_corpus(
    config: TrainConfig, dataset: Dataset, encoder, hook: ProgressHook | None = None
) -> tuple[np.ndarray, StageTiming]:
    timing = StageTiming("embed-corpus", "images")
    cache = Path(config.work_dir) / "embeddings" / encoder_key(encoder) / f"corpus-{dataset.data_hash}"
    with timing:
        vectors = embed_files(
            encoder, [image.path for image in dataset.corpus], cache, "embed corpus", timing, hook, "embed-corpus"
        )
    return vectors, timing


@dataclass
class Mined:
    fingerprint: str
    negatives: dict[str, list[dict[str, Any]]]  # prompt id -> [{"image_id", "object_id", "score", ...}]
    stats: dict[str, Any]

    def image_ids(self, prompt_id: str) -> list[str]:
        """Distinct negative image ids of a prompt, best first."""
        return list(dict.fromkeys(n["image_id"] for n in self.negatives.get(prompt_id, [])))


def mine_negatives(
    dataset: Dataset,
    prompt_ids: list[str],
    sample_vectors: np.ndarray,
    corpus_vectors: np.ndarray,
    per_sample: int,
    block: int = 256,
) -> tuple[list[list[dict[str, Any]]], list[bool]]:
    """For sample row i (prompt prompt_ids[i]): its `per_sample` nearest other-object corpus images,
    and whether its overall nearest real image was of the prompt's own object."""
    corpus_objects = dataset.object_ids
    prompts = {p.id: p for p in dataset.prompts}
    rows: list[list[dict[str, Any]]] = []
    own_hits: list[bool] = []
    for start in range(0, len(prompt_ids), block):
        ids = prompt_ids[start : start + block]
        scores = sample_vectors[start : start + block] @ corpus_vectors.T
        own = corpus_objects[None, :] == np.array([prompts[i].object_id for i in ids])[:, None]
        nearest = scores.argmax(axis=1)
        others = np.where(own, -np.inf, scores)
        for r, prompt_id in enumerate(ids):
            own_hits.append(bool(own[r, nearest[r]]))
            valid = int(np.isfinite(others[r]).sum())
            if valid == 0:
                raise ValueError(f"prompt {prompt_id}: the corpus holds no image of another object")
            k = min(per_sample, valid)
            top = np.argpartition(-others[r], k - 1)[:k]
            top = top[np.argsort(-others[r][top], kind="stable")]
            found = []
            for j in top:
                score = float(others[r, j])
                found.append(
                    {
                        "image_id": dataset.corpus[j].id,
                        "object_id": str(corpus_objects[j]),
                        "score": round(score, 6),
                        # own-object images ranked above this negative (skipped by the filter)
                        "skipped_same_object": int((scores[r][own[r]] > score).sum()),
                    }
                )
            rows.append(found)
    return rows, own_hits


def run_mine(
    config: TrainConfig,
    dataset: Dataset,
    samples: Samples,
    encoder,
    corpus_vectors: np.ndarray,
    hook: ProgressHook | None = None,
) -> tuple[Mined, StageTiming]:
    m = config.samples_per_prompt
    # samples.fingerprint already covers the weights; naming them here keeps the key honest on its own
    key = fingerprint(
        "mine-v2", samples.fingerprint, samples.weights, encoder_key(encoder), dataset.data_hash, m,
        config.negatives_per_sample,
    )
    out = Path(config.work_dir) / "mined" / config.generator / key / "negatives.json"
    timing = StageTiming("mine", "samples")
    cached = read_json(out)
    if cached is not None:
        timing.cached = len(dataset.prompts) * m
        return Mined(key, cached["negatives"], cached["stats"]), timing
    with timing:
        rows = [(p.id, path) for p in dataset.prompts for path in samples.paths(p.id)]
        cache = Path(config.work_dir) / "embeddings" / encoder_key(encoder) / f"samples-{samples.fingerprint}"
        vectors = embed_files(
            encoder, [str(path) for _, path in rows], cache, "embed samples", timing, hook, "mine"
        )
        found, own_hits = mine_negatives(
            dataset, [prompt_id for prompt_id, _ in rows], vectors, corpus_vectors, config.negatives_per_sample
        )
        negatives: dict[str, list[dict[str, Any]]] = {}
        for (prompt_id, path), entries in zip(rows, found, strict=True):
            sample_index = samples.paths(prompt_id).index(path)
            negatives.setdefault(prompt_id, []).extend({**e, "sample": sample_index} for e in entries)
        stats = {
            "samples": len(rows),
            # fraction of renders whose nearest real image already shows the prompt's object
            "render_nearest_is_own_object": round(float(np.mean(own_hits)), 4) if own_hits else None,
            "mean_negative_score": round(
                float(np.mean([n["score"] for ns in negatives.values() for n in ns])), 4
            )
            if negatives
            else None,
            "distinct_negative_images": len({n["image_id"] for ns in negatives.values() for n in ns}),
        }
        write_json(out, {"negatives": negatives, "stats": stats, "encoder": encoder.id, "fingerprint": key,
                         "generator_weights_sha256": samples.weights})
    return Mined(key, negatives, stats), timing
