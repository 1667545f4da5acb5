"""Dockerfiles, .dockerignore and the install pins the images share with the tests (no Docker)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading

import pytest

from deploy import validate as v

DOCKER = v.DEPLOY / "docker"
TEXTS = {role: path.read_text() for role, path in v.DOCKERFILES.items()}
DOCKERIGNORE = (v.REPO / ".dockerignore").read_text()


@pytest.mark.parametrize("role", sorted(TEXTS))
def test_dockerfile_keeps_our_invariants(role):
    assert v.check_dockerfile(TEXTS[role], role) == []


def test_dockerignore_sends_what_the_images_copy_and_nothing_secret():
    assert v.check_dockerignore(TEXTS, DOCKERIGNORE) == []


def test_images_install_the_tests_pins():
    """Same pyproject, same constraints.txt as `make install`: the image runs what the tests ran."""
    constraints = v.REPO / "constraints.txt"
    makefile = v.REPO / "Makefile"
    if not constraints.exists():
        pytest.skip("constraints.txt not generated yet")
    assert v.check_constraints(constraints.read_text(), makefile.read_text() if makefile.exists() else None) == []


def test_requirements_helper_prints_the_pyproject_pins(tmp_path):
    run = [sys.executable, str(DOCKER / "requirements_from_pyproject.py"), str(v.REPO / "pyproject.toml")]
    core = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    ml = subprocess.run([*run, "ml"], capture_output=True, text=True, check=True).stdout.split()
    project = v.pyproject()["project"]
    assert core == project["dependencies"]
    assert ml == project["dependencies"] + project["optional-dependencies"]["ml"]
    assert not [r for r in core if r.startswith(("torch", "diffusers", "open-clip"))], "the gateway image must stay torch-free"
    bad = subprocess.run([*run, "no-such-extra"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown extra" in bad.stderr


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib name)
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_probe_follows_the_service_port_and_status(http_server):
    probe = [sys.executable, str(DOCKER / "http_probe.py"), "--port-env", "REALRAG_TEST_PORT", "--default-port", "1"]
    env = {"REALRAG_TEST_PORT": str(http_server), "PATH": "/usr/bin:/bin"}
    assert subprocess.run([*probe, "/healthz"], env=env, capture_output=True).returncode == 0
    assert subprocess.run([*probe, "/readyz"], env=env, capture_output=True).returncode == 1
    closed = subprocess.run([*probe, "--timeout", "1", "/healthz"], env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    assert closed.returncode == 1  # default port 1: nothing listens


# ---- planted mistakes -------------------------------------------------------------------------

GATEWAY_COPY = "COPY services /opt/realrag/app/services\n"
# The worker target's copy (the ops target before it copies generator_service too, then realrag).
WORKER_COPY = "COPY generator_service /opt/realrag/app/generator_service\nRUN python -m compileall"
REQUIREMENTS_INSTALL = "pip install --prefer-binary -c constraints.txt -r /tmp/requirements.txt"
GPU_CAPABILITIES = "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
CPU_TORCH_INSTALL = 'pip install --prefer-binary --no-deps --index-url "$TORCH_CPU_INDEX" -c constraints.txt torch torchvision'
CUDA_GUARD = ("&& python -c \"import sys, torch; sys.exit(f'torch {torch.__version__} is a CUDA build' "
              "if torch.version.cuda else 0)\" \\\n ")


@pytest.mark.parametrize(
    ("role", "old", "new", "expected"),
    [
        pytest.param("gateway", "USER 10001:10001", "USER root", "numeric non-root USER", id="root-user"),
        pytest.param("ml", "USER 10001:10001", "", "numeric non-root USER", id="no-user"),
        pytest.param("gateway", "ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:3.11-slim",
                     "full x.y.z version", id="floating-base"),
        pytest.param("ml", "ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:latest",
                     "not pinned", id="latest-base"),
        pytest.param("ml", "HEALTHCHECK --interval=30s --timeout=10s", "HEALTHCHECK NONE\n#", "ml:worker: no HEALTHCHECK",
                     id="worker-without-healthcheck"),
        pytest.param("gateway", REQUIREMENTS_INSTALL, "pip install --prefer-binary -r /tmp/requirements.txt",
                     "does not use -c constraints.txt", id="unconstrained-install"),
        pytest.param("gateway", "requirements_from_pyproject.py pyproject.toml >", "requirements_from_pyproject.py pyproject.toml ml >",
                     "must stay torch-free", id="torch-in-gateway"),
        pytest.param("ml", 'VOLUME ["/models"]\n', "", "ml:retriever: no model-cache VOLUME", id="no-model-volume"),
        pytest.param("ml", "FROM ml-runtime AS worker", "FROM ml-runtime AS generator", "no build target 'worker'", id="renamed-target"),
        # The gateway image holds services/ alone.
        pytest.param("gateway", GATEWAY_COPY, GATEWAY_COPY + "COPY generator_service /opt/realrag/app/generator_service\n",
                     "gateway:gateway: copies generator_service; the gateway image holds services/ alone", id="gateway-copies-generator"),
        pytest.param("gateway", GATEWAY_COPY, GATEWAY_COPY + "COPY realrag /opt/realrag/app/realrag\n",
                     "gateway:gateway: copies realrag; the gateway image holds services/ alone", id="gateway-copies-realrag"),
        pytest.param("gateway", "COPY pyproject.toml constraints.txt ./", "COPY . ./",
                     "gateway:gateway: copies .; the gateway image holds services/ alone", id="gateway-copies-everything"),
        pytest.param("gateway", GATEWAY_COPY, "COPY services/ retriever_service/ /opt/realrag/app/\n",
                     "gateway:gateway: copies retriever_service/;", id="gateway-copies-two-folders"),
        pytest.param("gateway", GATEWAY_COPY, "", "gateway:gateway: does not copy services/", id="gateway-without-code"),
        pytest.param("gateway", REQUIREMENTS_INSTALL, "pip install --prefer-binary -c constraints.txt .",
                     "installs the realrag distribution", id="gateway-installs-the-project"),
        pytest.param("gateway", 'CMD ["python", "-m", "services.gateway"]', 'ENTRYPOINT ["realrag"]\nCMD ["gateway"]',
                     "gateway:gateway: must run `python -m services.gateway`, not realrag gateway (the service images have no `realrag`",
                     id="gateway-runs-the-cli"),
        # The ML targets: their own packages, their own module.
        pytest.param("ml", WORKER_COPY, "COPY realrag /opt/realrag/app/realrag\n" + WORKER_COPY, "ml:worker: copies realrag;",
                     id="worker-copies-realrag"),
        pytest.param("ml", "COPY --from=build /opt/venv /opt/venv\n",
                     "COPY --from=build /opt/venv /opt/venv\nCOPY retriever_service /opt/realrag/app/retriever_service\n",
                     "ml:worker: copies retriever_service;", id="shared-stage-copies-retriever"),
        pytest.param("ml", WORKER_COPY, "RUN python -m compileall", "ml:worker: does not copy generator_service/",
                     id="worker-without-code"),
        pytest.param("ml", 'CMD ["python", "-m", "retriever_service"]', 'CMD ["retriever"]',
                     "ml:retriever: must run `python -m retriever_service`", id="retriever-old-cmd"),
        pytest.param("ml", 'CMD ["python", "-m", "generator_service", "worker"]', 'ENTRYPOINT ["realrag"]\nCMD ["worker"]',
                     "ml:worker: must run `python -m generator_service worker`", id="worker-runs-the-cli"),
        pytest.param("ml", '"python", "-m", "generator_service", "probe", "--liveness"', '"realrag", "probe", "worker", "--liveness"',
                     "ml:worker: the HEALTHCHECK must run `python -m generator_service probe --liveness`", id="worker-cli-healthcheck"),
        pytest.param("ml", REQUIREMENTS_INSTALL, 'pip install --prefer-binary -c constraints.txt ".[ml]"',
                     "installs the realrag distribution", id="ml-installs-the-project"),
        pytest.param("ml", "requirements_from_pyproject.py pyproject.toml ml >", "requirements_from_pyproject.py pyproject.toml >",
                     "does not install the ml extra", id="ml-without-ml-extra"),
        # Which GPUs a container sees is decided by whoever grants them, never by the image.
        pytest.param("ml", GPU_CAPABILITIES, "NVIDIA_VISIBLE_DEVICES=all \\\n    " + GPU_CAPABILITIES,
                     "ml:ml-base: sets NVIDIA_VISIBLE_DEVICES", id="ml-bakes-visible-devices"),
        pytest.param("ml", "FROM ml-runtime AS worker\n", "FROM ml-runtime AS worker\nENV NVIDIA_VISIBLE_DEVICES all\n",
                     "ml:worker: sets NVIDIA_VISIBLE_DEVICES", id="worker-bakes-visible-devices-legacy-form"),
        pytest.param("gateway", "USER 10001:10001", "ARG NVIDIA_VISIBLE_DEVICES=0\nUSER 10001:10001",
                     "gateway:gateway: sets NVIDIA_VISIBLE_DEVICES", id="gateway-bakes-visible-devices"),
        # The CPU retriever carries torch's CPU build, the GPU targets the CUDA build.
        pytest.param("ml", "FROM ml-runtime-cpu AS retriever-cpu", "FROM ml-runtime AS retriever-cpu",
                     "ml:retriever-cpu: its venv (stage 'build') does not install torch from the CPU wheel index",
                     id="cpu-retriever-on-the-cuda-venv"),
        pytest.param("ml", CPU_TORCH_INSTALL, CPU_TORCH_INSTALL.replace('--index-url "$TORCH_CPU_INDEX" ', ""),
                     "ml:retriever-cpu: its venv (stage 'build-cpu') does not install torch from the CPU wheel index",
                     id="cpu-venv-from-pypi"),
        pytest.param("ml", "ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu",
                     "ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cu130",
                     "does not install torch from the CPU wheel index", id="cpu-venv-from-a-cuda-index"),
        pytest.param("ml", CUDA_GUARD, "", "never checks that no CUDA build of torch got in", id="cpu-venv-unchecked"),
        pytest.param("ml", "FROM ml-runtime AS worker", "FROM ml-runtime-cpu AS worker",
                     "ml:worker: its venv (stage 'build-cpu') installs torch from a CPU wheel index; worker needs the CUDA build",
                     id="worker-on-the-cpu-venv"),
        pytest.param("ml", "FROM ml-runtime-cpu AS retriever-cpu", "FROM ml-runtime-cpu AS retriever-small",
                     "ml: no build target 'retriever-cpu'", id="cpu-retriever-renamed"),
        pytest.param("ml", "COPY --from=build-cpu /opt/venv /opt/venv\n", "",
                     "ml:retriever-cpu: copies no /opt/venv from a build stage", id="cpu-runtime-without-venv"),
    ],
)
def test_planted_dockerfile_mistake_is_caught(role, old, new, expected):
    assert old in TEXTS[role], f"the planted edit no longer applies: {old!r}"
    problems = v.check_dockerfile(TEXTS[role].replace(old, new, 1), role)
    assert any(expected in p for p in problems), problems


def test_a_package_copied_in_the_build_stage_reaches_the_gateway_image():
    """COPY --from=build carries whatever the build stage copied from the context."""
    text = TEXTS["gateway"].replace(GATEWAY_COPY, GATEWAY_COPY + "COPY realrag /opt/realrag/app/realrag\n", 1)
    assert text.index("COPY realrag") < text.index("FROM ${PYTHON_IMAGE} AS gateway")
    problems = v.check_dockerfile(text, "gateway")
    assert any("gateway:gateway: copies realrag;" in p for p in problems), problems


def test_each_image_copies_only_its_packages():
    stages, _ = v.dockerfile_stages(TEXTS["gateway"])
    by_name = {s["name"]: s for s in stages if s["name"]}
    copied = {source.split("/")[0] for source in v.image_copies(by_name["gateway"], by_name)} & set(v.FIRST_PARTY)
    assert copied == {"services"}
    stages, _ = v.dockerfile_stages(TEXTS["ml"])
    by_name = {s["name"]: s for s in stages if s["name"]}
    for target, packages in (("retriever", {"services", "retriever_service"}), ("retriever-cpu", {"services", "retriever_service"}),
                             ("worker", {"services", "generator_service"}), ("ops", set(v.FIRST_PARTY))):
        copied = {source.split("/")[0] for source in v.image_copies(by_name[target], by_name)} & set(v.FIRST_PARTY)
        assert copied == packages, target
    commands = v.image_commands(TEXTS["ml"])
    assert commands["worker"]["argv"] == v.ENTRY_POINTS["worker"]
    assert commands["retriever"]["argv"] == commands["retriever-cpu"]["argv"] == v.ENTRY_POINTS["retriever"]
    assert commands["retriever-cpu"]["healthcheck"] == commands["retriever"]["healthcheck"]
    assert commands["ops"]["argv"][:1] == ["realrag"] and commands["ops"]["healthcheck"] is None
    assert v.image_commands(TEXTS["gateway"])["gateway"]["argv"] == v.ENTRY_POINTS["gateway"]


def test_planted_dockerignore_mistakes_are_caught():
    problems = v.check_dockerignore(TEXTS, DOCKERIGNORE.replace("!generator_service/\n", ""))
    assert any("excludes generator_service," in p for p in problems), problems
    problems = v.check_dockerignore(TEXTS, DOCKERIGNORE.replace("!realrag/\n", ""))
    assert any("excludes realrag, which ml.Dockerfile copies" in p for p in problems), problems
    problems = v.check_dockerignore(TEXTS, "**/__pycache__\n")  # no allow-list at all
    assert any("lets .env into the build context" in p for p in problems), problems


def test_planted_missing_copy_source_is_caught():
    text = TEXTS["gateway"].replace(GATEWAY_COPY, "COPY service /opt/realrag/app/services\n")
    problems = v.check_dockerignore({"gateway": text}, DOCKERIGNORE)
    assert any("copies service, which does not exist" in p for p in problems), problems


def test_planted_constraint_drift_is_caught():
    torch = v.pinned_version(v.pyproject()["project"]["optional-dependencies"]["ml"], "torch")
    drifted = f"torch=={torch}.post9\n"
    assert any("constraints.txt pins torch" in p for p in v.check_constraints(drifted, None))
    assert any("does not pin fastapi" in p for p in v.check_constraints(drifted, None))
    assert any("Makefile does not install with -c constraints.txt" in p
               for p in v.check_constraints(drifted, "install:\n\tpip install -e .[dev]\n"))


# ---- the gateway image: services/ alone on the core dependencies --------------------------------


def test_every_services_module_imports_without_the_ml_stack_or_the_other_packages():
    assert v.check_gateway_imports() == []


def test_the_gateway_image_lacks_exactly_the_non_core_modules():
    blocked = v.modules_outside_gateway_image()
    assert {"torch", "open_clip", "diffusers", "numpy", "pytest", "realrag", "generator_service", "retriever_service"} <= blocked
    assert not {"services", "fastapi", "uvicorn", "pydantic", "celery", "kombu", "redis", "PIL", "yaml", "httpx"} & blocked


# Each planted module breaks on its own; one probe run over the copy reports every one of them.
PLANTED_IMPORTS = {
    "services/gateway/planted_torch.py": ("import torch", "torch"),
    "services/planted_generator.py": ("from generator_service import heartbeat", "generator_service"),
    "services/gateway/planted_root.py": ("import realrag.cli", "realrag"),
    "services/planted_numpy.py": ("import numpy", "numpy"),  # an ml-extra dependency
}


def test_planted_imports_outside_the_gateway_image_are_caught(tmp_path):
    shutil.copytree(v.REPO / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__"))
    for module, (line, _) in PLANTED_IMPORTS.items():
        (tmp_path / module).write_text(line + "\n")
    problems = v.check_gateway_imports(tmp_path)
    for module, (_, missing) in PLANTED_IMPORTS.items():
        name = module.removesuffix(".py").replace("/", ".")
        assert any(p.startswith(f"gateway image: {name}: ") and repr(missing) in p for p in problems), (module, problems)
    assert len(problems) == len(PLANTED_IMPORTS), problems


def test_the_cpu_retriever_venv_installs_torch_from_the_cpu_index_under_the_tests_pins():
    """torch==2.14.1 in constraints.txt admits the CPU index's 2.14.1+cpu (PEP 440: a pin without a
    local label ignores the candidate's), so the CPU image runs the tested torch version."""
    from packaging.specifiers import SpecifierSet

    stages, _ = v.dockerfile_stages(TEXTS["ml"])
    by_name = {s["name"]: s for s in stages if s["name"]}
    venv = v._venv_stage(by_name["retriever-cpu"], by_name)
    assert venv["name"] == "build-cpu" and v._venv_stage(by_name["retriever"], by_name)["name"] == "build"
    assert v._torch_indexes(venv, by_name) == ["https://download.pytorch.org/whl/cpu"]
    assert v._torch_indexes(by_name["build"], by_name) == []
    ml = v.pyproject()["project"]["optional-dependencies"]["ml"]
    for name in ("torch", "torchvision"):
        pinned = v.pinned_version(ml, name)
        assert f"{pinned}+cpu" in SpecifierSet(f"=={pinned}"), name
