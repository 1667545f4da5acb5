"""What `make run` needs from the world: its corpus (rendered in memory, identical to the on-disk
``corpus`` split of the default world) and a prompt that names an unseen object."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from realrag.world.catalog import PROMPT_TEMPLATE, ObjectClass, WorldConfig, build_catalog
from realrag.world.dataset import photo_rng
from realrag.world.renderer import take_photo

# A novel object: its whole product line is unseen by world-sd (it exists only in the corpus).
DEMO_SCENE = "a photo of the {name} on a table"


@dataclass
class CorpusPhoto:
    image: Image.Image
    caption: str
    object_id: str
    label: str


def demo_corpus(cfg: WorldConfig | None = None) -> list[CorpusPhoto]:
    """The world's retrieval corpus (every class, seen and unseen), as the world renders it."""
    cfg = cfg or WorldConfig()
    cache: dict = {}
    out = []
    for cls in build_catalog(cfg):
        for i in range(cfg.corpus):
            image = take_photo(cls.spec, cfg.image_size, photo_rng(cfg, "corpus", cls, i), cache)
            out.append(CorpusPhoto(image, PROMPT_TEMPLATE.format(name=cls.name), cls.slug, cls.name))
    return out


def demo_object(cfg: WorldConfig | None = None) -> ObjectClass:
    """The first class of the first fully unseen line: a literally novel object for world-sd."""
    classes = build_catalog(cfg or WorldConfig())
    lines: dict[str, list[ObjectClass]] = {}
    for c in classes:
        lines.setdefault(c.line, []).append(c)
    for members in lines.values():
        if not any(c.seen for c in members):
            return members[0]
    return next(c for c in classes if not c.seen)


def demo_prompt(cfg: WorldConfig | None = None) -> tuple[str, ObjectClass]:
    obj = demo_object(cfg)
    return DEMO_SCENE.format(name=obj.name), obj
