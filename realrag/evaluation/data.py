"""Evaluation inputs: prompt sets, ImageFolder corpora and class names.

A prompt set is a JSONL file, one ``{"prompt": ..., "class": FOLDER}`` per line, where ``class``
names a class folder of the corpus and of the real-image set. Without a prompts file, one prompt
per class folder is made from a template. Class display names come from ``labels.json`` beside the
class folders ({folder: name}) or from the folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class EvalDataError(ValueError):
    """Evaluation data that cannot be used as given; the message names the file."""


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    cls: str  # class folder


@dataclass
class ImageFolder:
    """``ROOT/<class>/<image>``; images are opened lazily and cached (they are small or few)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise EvalDataError(f"image folder not found: {self.root}")
        self.files: dict[str, list[Path]] = {}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                self.files[folder.name] = files
        if not self.files:
            raise EvalDataError(f"no class folders with images under {self.root}")
        self._cache: dict[Path, Image.Image] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.files)

    @cached_property
    def entries(self) -> list[tuple[str, Path]]:
        """(class, path) for every image, in a fixed order (the corpus index order)."""
        return [(c, p) for c, paths in self.files.items() for p in paths]

    def open(self, path: Path) -> Image.Image:
        im = self._cache.get(path)
        if im is None:
            with Image.open(path) as fh:
                im = self._cache[path] = fh.convert("RGB")
        return im

    def images(self, cls: str) -> list[Image.Image]:
        if cls not in self.files:
            raise EvalDataError(f"class {cls!r} has no folder under {self.root}")
        return [self.open(p) for p in self.files[cls]]

    def class_names(self) -> dict[str, str]:
        labels = self.root / "labels.json"
        names = {c: c.replace("_", " ").replace("-", " ") for c in self.classes}
        if labels.is_file():
            names.update(json.loads(labels.read_text()))
        return names


def load_prompts(path: str | Path, known_classes: set[str]) -> list[PromptItem]:
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"prompts file not found: {path}")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = PromptItem(prompt=str(row["prompt"]), cls=str(row["class"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EvalDataError(f"{path}:{n}: expected {{\"prompt\": ..., \"class\": ...}} ({exc})") from exc
        if item.cls not in known_classes:
            raise EvalDataError(f"{path}:{n}: class {item.cls!r} is not a folder of the corpus and the real set")
        items.append(item)
    if not items:
        raise EvalDataError(f"no prompts in {path}")
    return items


def template_prompts(classes: list[str], names: dict[str, str], template: str = "a photo of a {name}") -> list[PromptItem]:
    return [PromptItem(template.format(name=names[c]), c) for c in classes]
