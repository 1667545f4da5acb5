"""The one-way layers of pyproject's [tool.importlinter] hold, and each contract catches a planted breach.

The contracts run over a copy of the packages' Python files, so planting a violation never touches
the working tree; the real tree is checked by `make lint` (part of `make test`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("services", "retriever_service", "generator_service", "realrag")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package,
                        ignore=lambda d, names: [n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())
                                                 or n == "__pycache__"])
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy shadows the editable install
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_every_contract(pristine: Path) -> None:
    result = lint(pristine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


PLANTED = [
    ("services/jobs.py", "import realrag.cli", "Composition root on top"),
    ("services/registry.py", "import generator_service.loader", "Composition root on top"),
    ("retriever_service/service.py", "import generator_service.loader", "Composition root on top"),
    ("generator_service/runner.py", "import services.gateway.views", "never import the gateway"),
    ("services/jobs.py", "import services.gateway.views", "the gateway and the notifier above the floor"),
    ("services/gateway/deps.py", "import torch", "never import ML libraries"),
    ("services/new_floor_module.py", "X = 1", "must be declared as a layer"),
]


@pytest.mark.parametrize(("module", "line", "contract"), PLANTED, ids=[f"{m}:{line}" for m, line, _ in PLANTED])
def test_a_planted_breach_fails(pristine: Path, tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = tmp_path / "tree"
    shutil.copytree(pristine, root)
    target = root / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    result = lint(root)
    assert result.returncode != 0
    assert contract in result.stdout.split("Broken contracts", 1)[1], result.stdout
