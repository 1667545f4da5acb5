"""Tiny copies of the real Hugging Face repos in an HF hub cache, and an offline hub pointing at it.

The cache is built once per version of the builder code (and of the libraries that write it) under
``.realrag/cache/real-layouts/<hash>`` (``REALRAG_REAL_LAYOUT_CACHE`` moves the root), so CI pays for
it once; a later session reuses it. Every test in this package runs with ``HF_HUB_OFFLINE=1`` and
``HF_HOME`` / ``HF_HUB_CACHE`` on that cache, the way a worker with a pre-filled cache runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
BUILDER_SOURCES = [
    HERE / "hub_cache.py",
    HERE / "components.py",
    HERE / "repos.py",
    # the adapter state dicts and the CLIP vocabulary come from the tiny twins' builders
    REPO_ROOT / "generator_service" / "tiny" / "tokenizers.py",
    REPO_ROOT / "generator_service" / "tiny" / "stable_diffusion.py",
    REPO_ROOT / "generator_service" / "tiny" / "stable_diffusion_3.py",
    REPO_ROOT / "generator_service" / "tiny" / "flux.py",
]
LIBRARIES = ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "huggingface_hub", "open_clip_torch")
COMPLETE = "COMPLETE"


def builder_hash() -> str:
    digest = hashlib.sha256()
    for path in BUILDER_SOURCES:
        digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={version(library)}".encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("REALRAG_REAL_LAYOUT_CACHE", REPO_ROOT / ".realrag" / "cache" / "real-layouts"))


def build(target: Path) -> None:
    """Build into a staging folder next to ``target`` and rename it into place (atomic; a concurrent
    session that lost the race throws its copy away)."""
    from tests.generator_service.real_layout.repos import build_hub_cache

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_hub_cache(staging / "hub")
    finally:
        torch.set_num_threads(threads)
    (staging / COMPLETE).write_text(f"built in {time.perf_counter() - started:.1f} s\n")
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in target.parent.iterdir():  # copies built by older builder code ("." = being built)
        if stale.name != target.name and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)


@pytest.fixture(scope="session")
def real_layout_cache() -> Path:
    """The ``HF_HUB_CACHE`` folder holding every repo the packaged presets name."""
    target = cache_root() / builder_hash()
    if not (target / COMPLETE).is_file():
        build(target)
    return target / "hub"


@pytest.fixture(scope="package", autouse=True)
def offline_hub(real_layout_cache):
    """HF_HUB_OFFLINE=1 with the hub cache on the fixture, for everything in this package.

    huggingface_hub reads its environment once, at import, into ``huggingface_hub.constants``
    (which every download path reads at call time), so both are set."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(real_layout_cache.parent),
            "HF_HUB_CACHE": str(real_layout_cache),
        }.items():
            patch.setenv(name, value)
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setattr(constants, "HF_HOME", str(real_layout_cache.parent))
        patch.setattr(constants, "HF_HUB_CACHE", str(real_layout_cache))
        yield real_layout_cache


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # other sessions share the machine's cores; the tiny models don't need more than one
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
