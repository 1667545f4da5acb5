"""Pluggable feature spaces (for FID/KID) and classifiers (for object accuracy).

Feature spaces, by spec string:

* ``inception:PATH``: the standard FID Inception-v3 (torchmetrics' ``NoTrainInceptionV3``, pool3,
  2048-d) with weights the user supplies by path (e.g. torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth``); nothing is downloaded.
* ``world-evaluator[:PATH]``: the synthetic world's evaluator (pooled CNN features).
* ``clip[:MODEL[@PRETRAINED]]``: an open_clip image tower (L2-normalised embeddings); without a
  model, the scorer CLIP. The substitute for real data when no Inception weights are at hand.

Classifiers: ``world-evaluator[:PATH]`` or ``clip-zeroshot`` (the scorer CLIP over
"a photo of a {class name}", as the paper's OpenCLIP accuracy).

Every result names the space/classifier it used (``.name``); a random-weight Inception is never
built (it collapses every image to the same features and FID to 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class FeatureSpecError(ValueError):
    pass


def _to_tensor(images: list[Image.Image], size: int | None) -> torch.Tensor:
    arrs = []
    for im in images:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        arrs.append(np.asarray(im, np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


@dataclass
class FeatureSpace:
    name: str
    num_features: int
    _extract: Callable[[list[Image.Image]], torch.Tensor]
    batch_size: int = 64

    @torch.no_grad()
    def extract(self, images: list[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.zeros(0, self.num_features, dtype=torch.float64)
        parts = [self._extract(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return torch.cat(parts).double().cpu()


@dataclass
class Classifier:
    name: str
    classes: list[str]  # class folder per output index
    _logits: Callable[[list[Image.Image]], torch.Tensor]

    @torch.no_grad()
    def predict(self, images: list[Image.Image], batch_size: int = 64) -> list[str]:
        out = []
        for i in range(0, len(images), batch_size):
            out.extend(self._logits(images[i:i + batch_size]).argmax(1).tolist())
        return [self.classes[k] for k in out]


def _split_spec(spec: str) -> tuple[str, str | None]:
    kind, _, arg = spec.partition(":")
    return kind.strip().lower(), (arg.strip() or None)


def world_evaluator_path(arg: str | None) -> Path:
    from realrag.world import EVALUATOR_WEIGHTS

    path = Path(arg) if arg else EVALUATOR_WEIGHTS
    if not path.is_file():
        raise FeatureSpecError(f"world evaluator weights not found: {path} (train them with "
                               "`python -m realrag.world train-evaluator`)")
    return path


def build_feature_space(spec: str, scorer=None, device: str = "cpu") -> FeatureSpace:
    kind, arg = _split_spec(spec)
    if kind == "inception":
        if not arg:
            raise FeatureSpecError("inception needs its weights by path: inception:/path/to/pt_inception-2015-12-05.pth")
        path = Path(arg)
        if not path.is_file():
            raise FeatureSpecError(f"Inception weights not found: {path}")
        from torchmetrics.image.fid import NoTrainInceptionV3

        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=str(path)).eval().to(device)

        def extract(images):
            x = (_to_tensor(images, 299) * 255).round().to(torch.uint8).to(device)
            return net(x)

        return FeatureSpace(f"inception-v3 pool3 2048-d ({path.name})", 2048, extract, batch_size=32)
    if kind == "world-evaluator":
        from realrag.world.train_evaluator import WorldEvaluator

        path = world_evaluator_path(arg)
        model = WorldEvaluator.load(path, device)
        return FeatureSpace(f"world-evaluator {model.num_features}-d ({path.name})", model.num_features,
                            lambda images: model.features(_to_tensor(images, model.image_size).to(device)))
    if kind == "clip":
        encoder = scorer if arg is None else _clip_from_arg(arg, device)
        if encoder is None:
            raise FeatureSpecError("clip features need a scorer CLIP or clip:MODEL@PRETRAINED")
        return FeatureSpace(f"clip image tower {encoder.dim}-d ({encoder.id})", encoder.dim,
                            lambda images: torch.from_numpy(encoder.encode_images(images)))
    raise FeatureSpecError(f"unknown feature space {spec!r}: use inception:PATH, world-evaluator[:PATH] or clip[:MODEL@PRETRAINED]")


def build_classifier(spec: str, classes: list[str], names: dict[str, str], scorer=None, device: str = "cpu",
                     template: str = "a photo of a {name}") -> Classifier:
    kind, arg = _split_spec(spec)
    if kind == "world-evaluator":
        from realrag.world.train_evaluator import WorldEvaluator

        path = world_evaluator_path(arg)
        model = WorldEvaluator.load(path, device)
        missing = sorted(set(classes) - set(model.class_names))
        if missing:
            raise FeatureSpecError(f"the world evaluator {path.name} does not know classes {missing[:5]}")
        return Classifier(f"world-evaluator ({path.name}, {len(model.class_names)} classes)", model.class_names,
                          lambda images: model(_to_tensor(images, model.image_size).to(device)))
    if kind == "clip-zeroshot":
        encoder = scorer if arg is None else _clip_from_arg(arg, device)
        if encoder is None:
            raise FeatureSpecError("clip-zeroshot needs a scorer CLIP or clip-zeroshot:MODEL@PRETRAINED")
        text = torch.from_numpy(encoder.encode_text([template.format(name=names[c]) for c in classes]))
        return Classifier(f"clip zero-shot over {len(classes)} classes ({encoder.id})", list(classes),
                          lambda images: torch.from_numpy(encoder.encode_images(images)) @ text.T)
    raise FeatureSpecError(f"unknown classifier {spec!r}: use world-evaluator[:PATH] or clip-zeroshot[:MODEL@PRETRAINED]")


def _clip_from_arg(arg: str, device: str):
    from retriever_service.encoder import ClipEncoder

    model, _, pretrained = arg.partition("@")
    return ClipEncoder(model, pretrained or None, device=device)
