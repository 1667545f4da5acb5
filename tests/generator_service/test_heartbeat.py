"""Worker heartbeat file: touch/read, and the liveness/readiness checks the container probes run."""

from __future__ import annotations

import json
import os

import pytest

from generator_service import heartbeat
from generator_service.__main__ import main as worker_main
from services.settings import get_settings


@pytest.fixture
def beat(tmp_path):
    path = tmp_path / "hb" / "worker-heartbeat"
    heartbeat.touch(path, consuming=False, model_loaded=False, device=None)  # the state is per process: start from "just started"
    return path


def age(path, seconds: float) -> None:
    """Make the last beat `seconds` old (what a worker stuck that long leaves behind)."""
    data = heartbeat.read(path)
    data["ts"] -= seconds
    path.write_text(json.dumps(data))


def test_touch_writes_state_atomically(beat):
    heartbeat.touch(beat, consuming=True)
    data = heartbeat.read(beat)
    assert data["consuming"] is True and data["model_loaded"] is False and data["pid"] == os.getpid()
    heartbeat.touch(beat, model_loaded=True)
    data = heartbeat.read(beat)
    assert data["consuming"] is True and data["model_loaded"] is True, "state accumulates across touches"
    assert [p.name for p in beat.parent.iterdir()] == [beat.name], "no temporary files are left behind"


def test_read_of_a_missing_or_corrupt_file_is_none(tmp_path):
    assert heartbeat.read(tmp_path / "absent") is None
    (tmp_path / "corrupt").write_text("{half a json")
    assert heartbeat.read(tmp_path / "corrupt") is None
    ok, reason = heartbeat.check(tmp_path / "absent", liveness=True, max_age_s=60, need_model=False)
    assert ok is False and "no heartbeat" in reason


def test_liveness_is_the_age_of_the_last_beat(beat):
    assert heartbeat.check(beat, liveness=True, max_age_s=60, need_model=False)[0] is True
    age(beat, 120)
    ok, reason = heartbeat.check(beat, liveness=True, max_age_s=60, need_model=False)
    assert ok is False and "max 60s" in reason
    heartbeat.touch(beat)
    assert heartbeat.check(beat, liveness=True, max_age_s=60, need_model=False)[0] is True


def test_liveness_does_not_need_a_consumer(beat):
    """A worker busy on a long job is alive even before the consumer reports in."""
    assert heartbeat.read(beat)["consuming"] is False and heartbeat.read(beat)["model_loaded"] is False
    ok, reason = heartbeat.check(beat, liveness=True, max_age_s=60, need_model=True)
    assert ok is True and reason.startswith("heartbeat age")


def test_readiness_needs_the_consumer_and_with_preload_the_model(beat):
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=False) == (False, "consumer not connected")
    heartbeat.touch(beat, consuming=True)
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=False) == (True, "ready")
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=True) == (False, "model not loaded")
    heartbeat.touch(beat, model_loaded=True)
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=True) == (True, "ready")


def test_probe_command_exit_codes(beat, monkeypatch, capsys):
    """`python -m generator_service probe`, as the Kubernetes probes run it, on the same file."""
    monkeypatch.setenv("REALRAG_HEARTBEAT_FILE", str(beat))
    monkeypatch.setenv("REALRAG_WORKER_PRELOAD", "true")
    get_settings.cache_clear()
    try:
        assert worker_main(["probe", "--liveness"]) == 0
        assert worker_main(["probe", "--readiness"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "consumer not connected"
        heartbeat.touch(beat, consuming=True)
        assert worker_main(["probe", "--readiness"]) == 1
        assert capsys.readouterr().out.strip() == "model not loaded"
        heartbeat.touch(beat, model_loaded=True)
        assert worker_main(["probe", "--readiness"]) == 0
        age(beat, 600)
        assert worker_main(["probe", "--liveness", "--max-age-s", "120"]) == 1
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_the_main_process_and_a_pool_child_keep_each_others_flags(tmp_path):
    """With REALRAG_WORKER_PRELOAD the child reports the model and the main process the consumer:
    neither beat may erase the other's flag, or readiness flaps. Two real processes."""
    import subprocess
    import sys

    path = tmp_path / "worker-heartbeat"
    child = f"from pathlib import Path; from generator_service import heartbeat; heartbeat.touch(Path({str(path)!r}), model_loaded=True)"
    main = f"""
import subprocess, sys
from pathlib import Path
from generator_service import heartbeat
path = Path({str(path)!r})
heartbeat.reset(path)                   # the worker starts
heartbeat.touch(path, consuming=True)   # its consumer connects
subprocess.run([sys.executable, "-c", {child!r}], check=True)  # a pool child loads the model
heartbeat.touch(path)                   # a later beat of the main process
"""
    subprocess.run([sys.executable, "-c", main], check=True, timeout=120)
    data = heartbeat.read(path)
    assert data["consuming"] is True and data["model_loaded"] is True
    assert heartbeat.check(path, liveness=False, max_age_s=60, need_model=True) == (True, "ready")
    heartbeat.reset(path)  # what a restarting worker writes first: an old run's flags do not count
    assert heartbeat.check(path, liveness=False, max_age_s=60, need_model=False) == (False, "consumer not connected")


def test_the_heartbeat_keeps_beating_while_a_model_loads(beat):
    """A first load of real weights takes minutes: the liveness probe must see fresh beats meanwhile."""
    import time

    age(beat, 600)
    with heartbeat.beating(beat, every_s=0.02):
        deadline = time.monotonic() + 30
        while not heartbeat.check(beat, liveness=True, max_age_s=60, need_model=False)[0]:
            assert time.monotonic() < deadline, "no beat while loading"
            time.sleep(0.02)


def test_beating_does_not_create_a_heartbeat_outside_a_worker(tmp_path):
    """`realrag generate` loads through the same loader: with no worker file there is nothing to touch."""
    import time

    with heartbeat.beating(tmp_path / "none", every_s=0.01):
        time.sleep(0.1)
    assert not (tmp_path / "none").exists()


def test_readiness_wants_the_model_on_the_configured_device(beat):
    heartbeat.touch(beat, consuming=True, model_loaded=True, device="cpu")
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=True, device=None) == (True, "ready")
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=True, device="cuda") == (
        False, "model loaded on cpu, not on cuda")
    heartbeat.touch(beat, device="cuda:0")
    assert heartbeat.check(beat, liveness=False, max_age_s=60, need_model=True, device="cuda")[0] is True


def test_a_fatal_start_fails_both_probes_and_survives_the_main_process_beats(beat):
    data = heartbeat.read(beat) or {}  # what a pool child that cannot start writes (tasks._die)
    beat.write_text(json.dumps({**data, "fatal": "DeviceUnavailable: REALRAG_DEVICE=cuda: no usable CUDA GPU"}))
    heartbeat.touch(beat, consuming=True)  # the main process keeps beating
    for liveness in (True, False):
        ok, reason = heartbeat.check(beat, liveness=liveness, max_age_s=60, need_model=False)
        assert not ok and reason.startswith("worker cannot start: DeviceUnavailable")
