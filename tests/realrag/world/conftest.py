"""A tiny rendered world shared by the world tests (a few classes, a few photos each)."""

from __future__ import annotations

import pytest

from realrag.world.catalog import WorldConfig

TINY = WorldConfig(seed=3, brands=2, lines_per_brand=2, variants_per_line=3, unseen_lines=1,
                   web=6, train=4, evaluator=4, corpus=2, test=2, extra_objects=6, extra_photos=2)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    from realrag.world.dataset import render_world

    return render_world(tmp_path_factory.mktemp("world"), TINY, log=lambda *_: None)
