"""Render the world to disk as ImageFolder splits, and read it back.

Layout of a world directory::

    world.json                      config + catalogue (names, designs, seen/unseen)
    images/<split>/<slug>/NNN.png   one folder per class, for every split
    web_captions.jsonl              {"path", "caption"} for the web split (base CLIP data)
    prompts/{seen,unseen}.jsonl     {"prompt", "class"} evaluation prompts

Every photo is seeded by (world seed, split, class, index), so a world is bit-identical across
runs and machines, and a split can be regenerated alone.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from realrag.world.catalog import PROMPT_TEMPLATE, ObjectClass, WorldConfig, build_catalog, web_caption
from realrag.world.renderer import take_photo

SPLITS = ("web", "train", "evaluator", "corpus", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def photo_rng(cfg: WorldConfig, split: str, cls: ObjectClass, i: int) -> random.Random:
    return random.Random(f"realrag-world/{cfg.seed}/{split}/{cls.index}/{i}")


def render_extras(cfg: WorldConfig, classes: list[ObjectClass]) -> np.ndarray:
    """Photos of the anonymous seen objects, in memory: uint8 (objects, photos, H, W, 3)."""
    from realrag.world.catalog import extra_specs

    cache: dict = {}
    specs = extra_specs(cfg, classes)
    out = np.zeros((len(specs), cfg.extra_photos, cfg.image_size, cfg.image_size, 3), np.uint8)
    for k, spec in enumerate(specs):
        for i in range(cfg.extra_photos):
            rng = random.Random(f"realrag-world/{cfg.seed}/extra/{k}/{i}")
            out[k, i] = np.asarray(take_photo(spec, cfg.image_size, rng, cache))
        cache.clear()
    return out


def render_world(out_dir: str | Path, cfg: WorldConfig, log=print) -> World:
    out = Path(out_dir)
    t0 = time.time()
    classes = build_catalog(cfg)
    cache: dict = {}
    captions = []
    caption_rng = random.Random(f"realrag-world/{cfg.seed}/captions")
    for split in SPLITS:
        n = getattr(cfg, split)
        for cls in classes:
            folder = out / "images" / split / cls.slug
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                photo = take_photo(cls.spec, cfg.image_size, photo_rng(cfg, split, cls, i), cache)
                path = folder / f"{i:03d}.png"
                photo.save(path, optimize=False, compress_level=1)
                if split == "web":
                    captions.append({"path": str(path.relative_to(out)),
                                     "caption": web_caption(cls, classes, cfg, caption_rng)})
    labels = json.dumps({c.slug: c.name for c in classes}, indent=1)
    for split in SPLITS:  # class display names for ImageFolder readers (eval harness, retriever training)
        (out / "images" / split / "labels.json").write_text(labels)
    with (out / "web_captions.jsonl").open("w") as fh:
        for row in captions:
            fh.write(json.dumps(row) + "\n")
    (out / "prompts").mkdir(exist_ok=True)
    for seen in (True, False):
        with (out / "prompts" / f"{'seen' if seen else 'unseen'}.jsonl").open("w") as fh:
            for cls in classes:
                if cls.seen == seen:
                    fh.write(json.dumps({"prompt": PROMPT_TEMPLATE.format(name=cls.name), "class": cls.slug}) + "\n")
    manifest = {"config": cfg.as_dict(), "classes": [c.as_dict() for c in classes]}
    (out / "world.json").write_text(json.dumps(manifest, indent=1))
    n_images = sum(getattr(cfg, s) for s in SPLITS) * len(classes)
    log(f"rendered {len(classes)} classes ({sum(c.seen for c in classes)} seen), {n_images} photos "
        f"at {cfg.image_size}px in {time.time() - t0:.1f}s -> {out}")
    return World.load(out)


@dataclass
class World:
    root: Path
    config: WorldConfig
    classes: list[ObjectClass]

    @classmethod
    def load(cls, root: str | Path) -> World:
        root = Path(root)
        manifest_path = root / "world.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"not a rendered world (no world.json): {root}")
        manifest = json.loads(manifest_path.read_text())
        return cls(root=root, config=WorldConfig(**manifest["config"]),
                   classes=[ObjectClass.from_dict(d) for d in manifest["classes"]])

    def split_dir(self, split: str) -> Path:
        return self.root / "images" / split

    @property
    def seen(self) -> list[ObjectClass]:
        return [c for c in self.classes if c.seen]

    @property
    def unseen(self) -> list[ObjectClass]:
        return [c for c in self.classes if not c.seen]

    def by_slug(self) -> dict[str, ObjectClass]:
        return {c.slug: c for c in self.classes}

    def prompts_file(self, which: str) -> Path:
        return self.root / "prompts" / f"{which}.jsonl"

    def captions(self) -> list[tuple[Path, str]]:
        rows = [json.loads(line) for line in (self.root / "web_captions.jsonl").read_text().splitlines()]
        return [(self.root / r["path"], r["caption"]) for r in rows]

    def load_split(self, split: str, classes: list[ObjectClass] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W, 3) and class indices (N,) of one split."""
        classes = self.classes if classes is None else classes
        images, labels = [], []
        for c in classes:
            for path in sorted((self.split_dir(split) / c.slug).iterdir()):
                images.append(np.asarray(Image.open(path).convert("RGB")))
                labels.append(c.index)
        return np.stack(images), np.asarray(labels, np.int64)


def list_image_folder(root: str | Path) -> dict[str, list[Path]]:
    """class folder name -> sorted image paths, for any ImageFolder-style directory."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[folder.name] = files
    if not out:
        raise ValueError(f"no class folders with images under {root}")
    return out
