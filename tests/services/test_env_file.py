"""Which dotenv file Settings reads: `.env` in the working directory for `realrag serve`, the file
named by REALRAG_ENV_FILE, or none ("" — what tests/conftest.py sets, so a developer's `.env` never
changes a test). Each case runs in a fresh interpreter: the choice is made when services.settings
is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.settings import Settings
from tests.conftest import REPO

PRINT_MAX_N = "from services.settings import Settings; print(Settings().max_n)"


def max_n_in_fresh_process(cwd, env_file: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALRAG_")}
    env["PYTHONPATH"] = str(REPO)
    if env_file is not None:
        env["REALRAG_ENV_FILE"] = env_file
    result = subprocess.run([sys.executable, "-c", PRINT_MAX_N], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".env").write_text("REALRAG_MAX_N=3\n")
    (tmp_path / "compose.env").write_text("REALRAG_MAX_N=2\n")
    return tmp_path


def test_dotenv_choice(project):
    default = Settings.model_fields["max_n"].default
    assert max_n_in_fresh_process(project, None) == 3  # realrag serve: ./.env
    assert max_n_in_fresh_process(project, "") == default  # tests: no file at all
    assert max_n_in_fresh_process(project, str(project / "compose.env")) == 2


def test_this_test_session_reads_no_dotenv_file(project, monkeypatch):
    monkeypatch.chdir(project)
    assert os.environ["REALRAG_ENV_FILE"] == "" and Settings.model_config["env_file"] is None
    assert Settings().max_n == Settings.model_fields["max_n"].default
