import json

import numpy as np
from PIL import Image

from realrag.world.catalog import PROMPT_TEMPLATE
from realrag.world.dataset import SPLITS, World, render_world
from tests.realrag.world.conftest import TINY


def test_world_layout(tiny_world):
    root = tiny_world.root
    assert len(tiny_world.classes) == 12 and len(tiny_world.unseen) == 3 + 3  # one whole line + one per other line
    for split in SPLITS:
        labels = json.loads((root / "images" / split / "labels.json").read_text())
        assert labels == {c.slug: c.name for c in tiny_world.classes}
        for c in tiny_world.classes:
            assert len(list((root / "images" / split / c.slug).glob("*.png"))) == getattr(TINY, split)
    unseen = [json.loads(line) for line in tiny_world.prompts_file("unseen").read_text().splitlines()]
    assert {r["class"] for r in unseen} == {c.slug for c in tiny_world.unseen}
    assert unseen[0]["prompt"] == PROMPT_TEMPLATE.format(name=tiny_world.by_slug()[unseen[0]["class"]].name)
    captions = tiny_world.captions()
    assert len(captions) == TINY.web * 12 and all(p.is_file() for p, _ in captions)


def test_load_split_and_seen_filter(tiny_world):
    images, labels = tiny_world.load_split("train", tiny_world.seen)
    assert images.shape == (TINY.train * len(tiny_world.seen), 32, 32, 3) and images.dtype == np.uint8
    assert set(labels.tolist()) == {c.index for c in tiny_world.seen}


def test_rendering_is_reproducible(tiny_world, tmp_path):
    again = render_world(tmp_path, TINY, log=lambda *_: None)
    assert World.load(tmp_path).classes == tiny_world.classes == again.classes
    a = (tiny_world.root / "images" / "corpus" / tiny_world.classes[0].slug / "000.png").read_bytes()
    b = (tmp_path / "images" / "corpus" / tiny_world.classes[0].slug / "000.png").read_bytes()
    assert a == b


def test_demo_corpus_matches_the_rendered_corpus_and_the_demo_object_is_novel(tiny_world):
    from realrag.world.demo import demo_corpus, demo_prompt

    corpus = demo_corpus(TINY)
    assert len(corpus) == TINY.corpus * len(tiny_world.classes)
    first = corpus[0]
    on_disk = np.asarray(Image.open(tiny_world.split_dir("corpus") / first.object_id / "000.png"))
    assert np.array_equal(np.asarray(first.image), on_disk)
    prompt, obj = demo_prompt(TINY)
    assert obj.name in prompt and not obj.seen
    assert not any(c.seen for c in tiny_world.classes if c.line == obj.line)  # its whole line is unseen
