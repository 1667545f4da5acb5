"""The commands the deployment files run exist and do what the probes need.

Every container runs a service module (`python -m services.gateway`, `python -m retriever_service`,
`python -m generator_service worker`) and the worker is probed with `python -m generator_service
probe`. Here the real modules parse those commands, and the probe commands, taken verbatim from the
Dockerfile, the compose file and the Kubernetes manifests, answer on a real heartbeat file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from deploy import validate as v

from .conftest import container


def run(argv: list[str], env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess[str]:
    """argv as a container would run it, with this environment's interpreter for `python`."""
    assert argv[0] == "python", argv
    base = {k: val for k, val in os.environ.items() if not k.startswith("REALRAG_")}
    base["PYTHONPATH"] = str(v.REPO)
    return subprocess.run([sys.executable, *argv[1:]], env={**base, **(env or {})}, cwd=cwd or v.REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("service", sorted(v.ENTRY_POINTS))
def test_each_service_module_accepts_its_deploy_command(service):
    argv = v.ENTRY_POINTS[service]
    assert (v.REPO / argv[2].replace(".", "/") / "__main__.py").is_file()
    result = run([*argv, "--help"])
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {argv[2]}" in result.stdout


def worker_probe_commands(compose_gpu, rendered_overlays) -> dict[str, list[str]]:
    worker = container(rendered_overlays["gpu"], "realrag-worker")
    test = compose_gpu["services"]["worker"]["healthcheck"]["test"]
    return {
        "Dockerfile HEALTHCHECK": v.image_commands(v.DOCKERFILES["ml"].read_text())["worker"]["healthcheck"],
        "compose healthcheck": test[1:] if test[0] == "CMD" else test,
        **{f"k8s {probe}": [str(a) for a in worker[probe]["exec"]["command"]]
           for probe in ("startupProbe", "readinessProbe", "livenessProbe")},
    }


def test_the_worker_probes_answer_on_a_real_heartbeat(compose_gpu, rendered_overlays, tmp_path):
    heartbeat = tmp_path / "heartbeat"
    env = {"REALRAG_HEARTBEAT_FILE": str(heartbeat), "REALRAG_WORKER_PRELOAD": "true"}
    unique: dict[tuple[str, ...], list[str]] = {}
    for where, argv in worker_probe_commands(compose_gpu, rendered_overlays).items():
        assert argv[:4] == v.WORKER_PROBE, (where, argv)
        unique.setdefault(tuple(argv), []).append(where)
    assert len(unique) == 2  # the liveness and the readiness command
    for argv_tuple, where in unique.items():
        argv = list(argv_tuple)

        heartbeat.unlink(missing_ok=True)
        missing = run(argv, env, cwd=tmp_path)
        assert missing.returncode == 1 and "no heartbeat" in missing.stdout, (where, missing.stdout, missing.stderr)

        heartbeat.write_text(json.dumps({"consuming": True, "model_loaded": True, "ts": time.time()}))
        fresh = run(argv, env, cwd=tmp_path)
        assert fresh.returncode == 0, (where, fresh.stdout, fresh.stderr)

        if "--liveness" in argv:  # a consumer that stopped long ago
            heartbeat.write_text(json.dumps({"consuming": True, "model_loaded": True, "ts": time.time() - 3600}))
        else:  # up, but the model is still loading
            heartbeat.write_text(json.dumps({"consuming": True, "model_loaded": False, "ts": time.time()}))
        stale = run(argv, env, cwd=tmp_path)
        assert stale.returncode == 1, (where, stale.stdout, stale.stderr)
