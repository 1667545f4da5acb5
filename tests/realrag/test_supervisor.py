"""`realrag serve` supervision (Stack.supervise) on real child processes: restart with backoff, say
why, give up with a non-zero result. The whole stack under `realrag serve` is in test_serve.py."""

from __future__ import annotations

import sys
import threading

from realrag.stack import RestartPolicy, Stack, describe_exit
from services.settings import Settings

FAST = RestartPolicy(max_restarts=2, window_s=60, first_backoff_s=0.05, max_backoff_s=0.2)


def stack_with(tmp_path, **children: str) -> Stack:
    stack = Stack(Settings(data_dir=tmp_path), tmp_path / "logs")
    for name, code in children.items():
        stack.spawn(name, [sys.executable, "-c", code])
    return stack


def test_a_child_that_keeps_crashing_is_restarted_then_given_up_on(tmp_path, capsys):
    stack = stack_with(tmp_path, flaky="import sys; print('started', flush=True); sys.exit(3)")
    try:
        assert stack.supervise(FAST, poll_s=0.02) == 1
    finally:
        stack.stop()
    assert (tmp_path / "logs" / "flaky.log").read_text().split() == ["started"] * 3, "first run and 2 restarts"
    err = capsys.readouterr().err
    assert err.count("flaky exited (exit code 3)") == 3
    assert f"its log: {tmp_path / 'logs' / 'flaky.log'}" in err
    assert "restart 1 of at most 2" in err and "restart 2 of at most 2" in err
    assert "crashed 3 times within 60s: giving up" in err


def test_a_crashed_child_comes_back_and_the_others_run_on(tmp_path, capsys):
    marker = tmp_path / "crashed-once"
    crash_once = (
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch(); sys.exit(7)\n"
        "print('up again', flush=True); time.sleep(60)\n"
    )
    stack = stack_with(tmp_path, retriever=crash_once, gateway="import time; time.sleep(60)")
    gateway = stack.processes["gateway"]
    stop = threading.Event()
    result: list[int] = []
    supervisor = threading.Thread(target=lambda: result.append(stack.supervise(FAST, stop=stop, poll_s=0.02)))
    supervisor.start()
    try:
        log = tmp_path / "logs" / "retriever.log"
        for _ in range(500):
            if "up again" in (log.read_text() if log.exists() else ""):
                break
            stop.wait(0.02)
        assert "up again" in log.read_text()
        assert stack.processes["retriever"].poll() is None
        assert stack.processes["gateway"] is gateway and gateway.poll() is None, "the others are left alone"
    finally:
        stop.set()
        supervisor.join(timeout=10)
        stack.stop()
    assert result == [0]
    err = capsys.readouterr().err
    assert "retriever exited (exit code 7)" in err and "retriever restarted" in err
    assert "gateway" not in err


def test_exit_descriptions():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
