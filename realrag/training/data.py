"""Training data: real images of objects, the prompts that name them, and the split by object.

Sources:

* a folder tree ``ROOT/<object_id>/<image>``: the label is the folder name with ``_`` and ``-`` as spaces
  (or ``ROOT/labels.json`` {object_id: label}); an optional ``<image>.txt`` beside an image is its
  caption;
* a JSONL manifest (one object per line) or a CSV manifest (header row), with the fields ``path``,
  ``object_id`` and optionally ``caption`` and ``label``; relative paths are resolved against
  ``data_root`` (default: the manifest's folder).

Prompts come from captions (each caption is a prompt whose positive is its own image) or from
templates (``"a photo of a {label}"``: one prompt per object and template, every image of the object
is a positive). The split is by object: held-out objects are never seen in training.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from .config import TrainConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Split = Literal["train", "val", "held_out"]


class DataError(ValueError):
    """Training data that cannot be used as given; the message names the file or field."""


@dataclass(frozen=True)
class CorpusImage:
    id: str  # content hash prefix: the same pixels file always gets the same id
    path: str
    object_id: str
    label: str
    caption: str | None = None


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    object_id: str
    positives: tuple[str, ...]
    split: Split = "train"


@dataclass
class Dataset:
    corpus: list[CorpusImage]
    prompts: list[Prompt]
    data_hash: str
    source: str
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {image.id: i for i, image in enumerate(self.corpus)}

    def position(self, image_id: str) -> int:
        return self._index[image_id]

    def image(self, image_id: str) -> CorpusImage:
        return self.corpus[self._index[image_id]]

    @property
    def object_ids(self) -> np.ndarray:
        return np.array([image.object_id for image in self.corpus])

    def split(self, name: Split) -> list[Prompt]:
        return [p for p in self.prompts if p.split == name]

    def objects(self, split: Split) -> list[str]:
        return sorted({p.object_id for p in self.prompts if p.split == split})

    def summary(self) -> dict:
        return {
            "source": self.source,
            "data_hash": self.data_hash,
            "images": len(self.corpus),
            "objects": len({image.object_id for image in self.corpus}),
            "prompts": {s: len(self.split(s)) for s in ("train", "val", "held_out")},
            "objects_by_split": {s: len(self.objects(s)) for s in ("train", "val", "held_out")},
        }

    def to_json(self) -> dict:
        return {
            "summary": self.summary(),
            "corpus": [asdict(image) for image in self.corpus],
            "prompts": [{**asdict(p), "positives": list(p.positives)} for p in self.prompts],
        }


# --- reading sources ------------------------------------------------------------------------------


@dataclass
class _Row:
    path: Path
    object_id: str
    label: str | None
    caption: str | None
    where: str


def _clean(value) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _read_folder(root: Path) -> list[_Row]:
    labels: dict[str, str] = {}
    labels_file = root / "labels.json"
    if labels_file.is_file():
        try:
            labels = {str(k): str(v) for k, v in json.loads(labels_file.read_text("utf-8")).items()}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise DataError(f"{labels_file}: expected a JSON object {{object_id: label}} ({exc})") from exc
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            sidecar = file.with_name(file.name + ".txt")
            caption = _clean(sidecar.read_text("utf-8")) if sidecar.is_file() else None
            rows.append(
                _Row(file, folder.name, labels.get(folder.name), caption, where=str(file.relative_to(root)))
            )
    return rows


def _read_manifest(manifest: Path, data_root: Path | None) -> list[_Row]:
    base = data_root or manifest.parent
    if manifest.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(manifest.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{manifest}:{number}: invalid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{manifest}:{number}: expected a JSON object")
            records.append((f"{manifest.name}:{number}", record))
    elif manifest.suffix.lower() == ".csv":
        with manifest.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "object_id"} <= set(reader.fieldnames):
                raise DataError(f"{manifest}: the CSV header must name at least 'path' and 'object_id'")
            records = [(f"{manifest.name}:{n}", row) for n, row in enumerate(reader, start=2)]
    else:
        raise DataError(f"{manifest}: a manifest must be .jsonl or .csv")
    rows = []
    for where, record in records:
        path, object_id = _clean(record.get("path")), _clean(record.get("object_id"))
        if not path or not object_id:
            raise DataError(f"{where}: 'path' and 'object_id' are required")
        file = Path(path)
        rows.append(
            _Row(
                file if file.is_absolute() else base / file,
                object_id,
                _clean(record.get("label")),
                _clean(record.get("caption")),
                where,
            )
        )
    return rows


def read_rows(config: TrainConfig) -> list[_Row]:
    source = Path(config.data)
    if source.is_dir():
        rows = _read_folder(source)
    elif source.is_file():
        rows = _read_manifest(source, config.data_root)
    else:
        raise DataError(f"training data not found: {source}")
    if not rows:
        raise DataError(f"{source}: no images found")
    return rows


# --- building the dataset -----------------------------------------------------------------------


def content_id(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def _corpus(rows: list[_Row]) -> list[CorpusImage]:
    corpus: dict[str, CorpusImage] = {}
    labels: dict[str, str] = {}
    for row in rows:
        if not row.path.is_file():
            raise DataError(f"{row.where}: image file not found: {row.path}")
        image_id = content_id(row.path)
        label = row.label or labels.get(row.object_id) or row.object_id.replace("_", " ").replace("-", " ")
        if labels.setdefault(row.object_id, label) != label:
            raise DataError(
                f"{row.where}: object {row.object_id!r} has two labels: {labels[row.object_id]!r} and {label!r}"
            )
        image = CorpusImage(image_id, str(row.path.resolve()), row.object_id, label, row.caption)
        previous = corpus.get(image_id)
        if previous is not None and previous.object_id != row.object_id:
            raise DataError(
                f"{row.where}: the same image is listed under objects {previous.object_id!r} and "
                f"{row.object_id!r} ({previous.path})"
            )
        if previous is None or (previous.caption is None and row.caption is not None):
            corpus[image_id] = image
    return sorted(corpus.values(), key=lambda image: (image.object_id, image.id))


def _split_objects(objects: list[str], config: TrainConfig) -> dict[str, Split]:
    if config.held_out_objects is not None:
        unknown = sorted(set(config.held_out_objects) - set(objects))
        if unknown:
            raise DataError(f"held_out_objects not in the data: {unknown}")
        held = set(config.held_out_objects)
    else:
        order = list(np.random.default_rng(config.seed).permutation(len(objects)))
        count = round(config.held_out_fraction * len(objects))
        if config.held_out_fraction > 0:
            count = max(count, 1)
        held = {objects[i] for i in order[:count]}
    rest = [o for o in objects if o not in held]
    if not rest:
        raise DataError("the split leaves no training objects; lower held_out_fraction")
    val: set[str] = set()
    if config.val_fraction > 0:
        order = list(np.random.default_rng(config.seed + 1).permutation(len(rest)))
        val = {rest[i] for i in order[: max(1, round(config.val_fraction * len(rest)))]}
        if len(val) == len(rest):
            raise DataError("val_fraction leaves no training objects")
    return {o: ("held_out" if o in held else "val" if o in val else "train") for o in objects}


def _prompt_id(object_id: str, text: str) -> str:
    return hashlib.sha256(f"{object_id}\x00{text}".encode()).hexdigest()[:16]


def _prompts(corpus: list[CorpusImage], config: TrainConfig, splits: dict[str, Split]) -> list[Prompt]:
    by_object: dict[str, list[CorpusImage]] = {}
    for image in corpus:
        by_object.setdefault(image.object_id, []).append(image)
    prompts: dict[tuple[str, str], list[str]] = {}
    for object_id, images in sorted(by_object.items()):
        if config.prompt_source == "templates":
            for template in config.templates:
                text = template.format(label=images[0].label, object_id=object_id)
                prompts.setdefault((object_id, text), []).extend(image.id for image in images)
        else:
            captioned = [image for image in images if image.caption]
            if not captioned:
                raise DataError(
                    f"object {object_id!r} has no captioned image; use prompt_source 'templates' "
                    "or add captions"
                )
            for image in captioned:
                prompts.setdefault((object_id, image.caption), []).append(image.id)
    return [
        Prompt(_prompt_id(o, text), text, o, tuple(dict.fromkeys(positives)), splits[o])
        for (o, text), positives in prompts.items()
    ]


def load_dataset(config: TrainConfig) -> Dataset:
    corpus = _corpus(read_rows(config))
    objects = sorted({image.object_id for image in corpus})
    if len(objects) < 2:
        raise DataError(f"{config.data}: at least two objects are needed (found {objects})")
    splits = _split_objects(objects, config)
    prompts = _prompts(corpus, config, splits)
    digest = hashlib.sha256(
        json.dumps(
            {
                "corpus": [(i.id, i.object_id, i.label, i.caption) for i in corpus],
                "prompts": [(p.id, p.text, p.object_id, p.positives, p.split) for p in prompts],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return Dataset(corpus, prompts, digest[:16], str(config.data))


def open_image(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
