"""docker-compose.yml (+ the CPU override): it parses with Docker Compose v2 and keeps our invariants.

Each planted-mistake test edits a copy of the real file the way a person might, renders it with the
real `docker compose config`, and expects the check (or compose itself) to reject it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import validate as v

COMPOSE_TEXT = v.COMPOSE_FILES[0].read_text()


def SEC(name: str) -> str:  # noqa: N802 - reads like the interpolation it writes
    """How docker-compose.yml interpolates a secret from deploy/compose.secrets.env."""
    return f"${{{name}:?set {name} in deploy/compose.secrets.env (see deploy/compose.secrets.env.example)}}"


def test_gpu_stack_passes_every_check(compose_gpu, compose_source):
    assert v.check_compose(compose_gpu, compose_source) == []


def test_cpu_override_passes_every_check(compose_cpu, compose_source):
    assert v.check_compose(compose_cpu, compose_source, cpu_only=True) == []
    assert v.check_compose_secrets(v.load_compose_source(v.COMPOSE_CPU_OVERRIDE)) == []


def test_gpu_services_reserve_an_nvidia_gpu(compose_gpu):
    for name in v.GPU_SERVICES:
        devices = compose_gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": 1}]
    assert "deploy" not in compose_gpu["services"]["gateway"]


def test_cpu_override_drops_gpus_and_runs_tiny_offline(compose_cpu):
    for name in v.GPU_SERVICES:
        service = compose_cpu["services"][name]
        assert not (service.get("deploy") or {}).get("resources")
        assert service["environment"]["HF_HUB_OFFLINE"] == "1"
        assert service["environment"]["REALRAG_DEFAULT_MODEL"] == "tiny-sd"
    assert compose_cpu["services"]["retriever"]["environment"]["REALRAG_ENCODER_MODEL"] == "/opt/realrag/configs/tiny-clip.json"


def test_same_settings_as_realrag_serve(compose_gpu):
    """The containers' REALRAG_* variables build the very Settings object `realrag serve` uses."""
    for name in v.APP_SERVICES:
        settings = v.build_settings(compose_gpu["services"][name]["environment"])
        assert settings.qdrant_url == "http://qdrant:6333"
        assert str(settings.artifact_root) == "/artifacts"
    services = {name: v.build_settings(compose_gpu["services"][name]["environment"]) for name in (*v.APP_SERVICES, "notifier")}
    for name in ("gateway", "worker", "notifier"):
        assert services[name].redis_url == "redis://:CHANGE-ME-redis-password@redis:6379/0"
    assert services["retriever"].qdrant_api_key.get_secret_value() == "CHANGE-ME-qdrant-api-key"
    assert [t.name for t in services["gateway"].tenants] == ["change-me"]
    worker = v.build_settings(compose_gpu["services"]["worker"]["environment"])
    assert worker.worker_preload is True
    assert worker.visibility_timeout_s > worker.task_time_limit_s


def test_a_missing_secret_stops_compose_with_a_clear_message(tmp_path):
    env = tmp_path / "partial.env"
    env.write_text("QDRANT_API_KEY=x\nREALRAG_METRICS_TOKEN=m\n")
    with pytest.raises(v.ToolError, match="REDIS_PASSWORD"):
        v.render_compose(v.COMPOSE_FILES, env_file=env)


def test_the_env_examples_hold_only_placeholders():
    for path in (v.COMPOSE_ENV_EXAMPLE, v.COMPOSE_SECRETS_EXAMPLE, v.K8S_SECRETS_EXAMPLE):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                if v.SECRET_NAME.search(key) and value:
                    assert "CHANGE-ME" in value.upper(), f"{path.name}: {key} looks like a real secret"


def test_real_env_files_are_git_ignored():
    ignore = (v.DEPLOY / ".gitignore").read_text()
    assert "compose.env" in ignore and "compose.secrets.env" in ignore and "k8s/**/secrets.env" in ignore


def test_least_privilege_each_container_gets_only_its_secrets(compose_gpu):
    """The Qdrant key only in the retriever, the webhook secret only in the notifier, tenants,
    signing key and metrics token only in the gateway, Redis not in the retriever."""
    env = {name: compose_gpu["services"][name]["environment"] for name in (*v.APP_SERVICES, "notifier")}
    holders = {key: {name for name, e in env.items() if e.get(key)} for key in
               ("REALRAG_QDRANT_API_KEY", "REALRAG_TENANTS", "REALRAG_URL_SIGNING_KEY", "REALRAG_METRICS_TOKEN",
                "REALRAG_RETRIEVER_TOKEN", "REALRAG_RETRIEVER_ADMIN_TOKEN", "REALRAG_REDIS_URL")}
    assert holders == {"REALRAG_QDRANT_API_KEY": {"retriever"}, "REALRAG_TENANTS": {"gateway"}, "REALRAG_URL_SIGNING_KEY": {"gateway"},
                       "REALRAG_METRICS_TOKEN": {"gateway"}, "REALRAG_RETRIEVER_TOKEN": {"gateway", "retriever"},
                       "REALRAG_RETRIEVER_ADMIN_TOKEN": {"retriever"}, "REALRAG_REDIS_URL": {"gateway", "worker", "notifier"}}
    assert "REALRAG_WEBHOOK_SECRET" in compose_gpu["services"]["notifier"]["environment"]
    assert not any("REALRAG_WEBHOOK_SECRET" in env[name] for name in v.APP_SERVICES)


def test_the_settings_file_holds_no_secret(tmp_path):
    assert v.check_compose_settings_file(v.COMPOSE_ENV_EXAMPLE.read_text()) == []
    leaked = v.COMPOSE_ENV_EXAMPLE.read_text() + "QDRANT_API_KEY=CHANGE-ME\n# REALRAG_WEBHOOK_SECRET=\n"
    problems = v.check_compose_settings_file(leaked)
    assert any("QDRANT_API_KEY is a secret in the file every app container reads" in p for p in problems), problems
    assert any("REALRAG_WEBHOOK_SECRET is a secret" in p for p in problems), problems


def test_the_notifier_delivers_webhooks_on_the_gateway_image(compose_gpu, compose_cpu):
    for rendered in (compose_gpu, compose_cpu):
        notifier = rendered["services"]["notifier"]
        assert notifier["command"] == ["python", "-m", "services.notifier"]
        assert notifier["image"] == rendered["services"]["gateway"]["image"]
        assert notifier["healthcheck"]["test"] == ["CMD", "python", "-m", "services.notifier", "--probe"]
        assert "deploy" not in notifier


# ---- planted mistakes -------------------------------------------------------------------------


def plant(tmp_path: Path, old: str, new: str, cpu_only: bool = False) -> list[str]:
    assert old in COMPOSE_TEXT, f"the planted edit no longer applies: {old!r}"
    path = tmp_path / "docker-compose.yml"
    path.write_text(COMPOSE_TEXT.replace(old, new, 1))
    files = [path, v.COMPOSE_CPU_OVERRIDE] if cpu_only else [path]
    return v.check_compose(v.render_compose(files), v.load_compose_source(path), cpu_only=cpu_only)


WORKER_GPU = "    deploy: *gpu\n    # Longer than"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(WORKER_GPU, "    # Longer than", "worker: GPU service without", id="worker-without-gpu"),
        pytest.param("      start_period: 20s\n    restart: unless-stopped\n", "      start_period: 20s\n",
                     "qdrant: no restart policy", id="no-restart-policy"),
        pytest.param("    restart: unless-stopped\n\n  qdrant:", "    restart: sometimes\n\n  qdrant:",
                     "redis: no restart policy", id="bad-restart-value"),
        pytest.param("      test: [\"CMD-SHELL\", \"redis-cli ping | grep -q PONG\"]", "      disable: true",
                     "redis: no healthcheck", id="healthcheck-disabled"),
        pytest.param(f"redis://:{SEC('REDIS_PASSWORD')}@redis",
                     "redis://:hunter2@redis", "literal password in a URL", id="password-in-url"),
        pytest.param("  REALRAG_QDRANT_API_KEY: ${QDRANT_API_KEY:?set QDRANT_API_KEY in deploy/compose.secrets.env (see deploy/"
                     "compose.secrets.env.example)}", "  REALRAG_QDRANT_API_KEY: ${QDRANT_API_KEY:-s3cret}",
                     "REALRAG_QDRANT_API_KEY holds a literal secret", id="secret-as-default"),
        pytest.param("image: redis:8.2.2-alpine", "image: redis:latest", "redis: image 'redis:latest' is not pinned",
                     id="unpinned-image"),
        pytest.param("      qdrant:\n        condition: service_healthy", "      qdrant:\n        condition: service_started",
                     "depends_on qdrant must wait for condition service_healthy", id="start-order"),
        pytest.param("stop_grace_period: 12m", "stop_grace_period: 5m", "must exceed the hard task limit",
                     id="grace-shorter-than-job"),
        pytest.param("      - noeviction", "      - allkeys-lru", "noeviction", id="redis-evicts"),
        pytest.param("        - bash\n        - -c", "        - curl\n        - -fsS", "qdrant image has no curl",
                     id="qdrant-curl-healthcheck"),
        pytest.param("  REALRAG_QDRANT_URL: http://qdrant:6333", "  REALRAG_QDRANT_ULR: http://qdrant:6333",
                     "REALRAG_QDRANT_ULR is not a setting", id="settings-typo"),
        pytest.param("      REMAP_SIGTERM: SIGQUIT\n", "", "REMAP_SIGTERM=SIGQUIT", id="no-soft-shutdown"),
        pytest.param("      REALRAG_HEARTBEAT_FILE: /tmp/realrag-worker-heartbeat",
                     "      REALRAG_HEARTBEAT_FILE: /artifacts/heartbeat", "REALRAG_HEARTBEAT_FILE", id="shared-heartbeat"),
        pytest.param("REALRAG_VISIBILITY_TIMEOUT_S:-900", "REALRAG_VISIBILITY_TIMEOUT_S:-600",
                     "visibility_timeout_s must exceed task_time_limit_s", id="visibility-below-time-limit"),
        # Each service runs its module; the images have no `realrag` command.
        pytest.param("    command: [python, -m, services.gateway]\n", "    command: [gateway]\n",
                     "compose service gateway: must run `python -m services.gateway`, not gateway", id="gateway-cli-command"),
        pytest.param("    command: [python, -m, generator_service, worker]\n", "    command: [realrag, worker]\n",
                     "worker: must run `python -m generator_service worker`, not realrag worker (the service images have no",
                     id="worker-cli-command"),
        pytest.param("    command: [python, -m, retriever_service]\n", "", "retriever: must run `python -m retriever_service`, not nothing",
                     id="retriever-image-default"),
        pytest.param('test: ["CMD", "python", "-m", "generator_service", "probe", "--readiness"]',
                     'test: ["CMD", "realrag", "probe", "worker", "--readiness"]',
                     "worker: the healthcheck must run `python -m generator_service probe`", id="worker-cli-healthcheck"),
        # The stack reads its own env file, never the developer's .env (`realrag serve`'s settings).
        pytest.param("  - path: deploy/compose.env\n", "  - path: .env\n", "env_file reads the developer's .env",
                     id="reads-developer-dotenv"),
        # Least privilege (#10): secrets only where used; webhooks by the notifier.
        pytest.param("  - path: deploy/compose.env\n", "  - path: deploy/compose.secrets.env\n",
                     "env_file deploy/compose.secrets.env hands every secret to the container", id="secrets-file-as-env-file"),
        pytest.param("      REALRAG_WORKER_PRELOAD: \"true\"\n",
                     f"      REALRAG_WORKER_PRELOAD: \"true\"\n      REALRAG_QDRANT_API_KEY: {SEC('QDRANT_API_KEY')}\n",
                     "compose service worker: REALRAG_QDRANT_API_KEY carries secret QDRANT_API_KEY, which the worker does not use",
                     id="qdrant-key-in-worker"),
        pytest.param("      REALRAG_WORKER_PRELOAD: \"true\"\n",
                     "      REALRAG_WORKER_PRELOAD: \"true\"\n      REALRAG_WEBHOOK_SECRET: ${REALRAG_WEBHOOK_SECRET:-}\n"
                     "      REALRAG_METRICS_TOKEN: ${REALRAG_METRICS_TOKEN:?x}\n",
                     "compose service worker: REALRAG_METRICS_TOKEN carries secret REALRAG_METRICS_TOKEN", id="metrics-token-in-worker"),
        pytest.param("  REALRAG_QDRANT_URL: http://qdrant:6333\n", f"  REALRAG_QDRANT_URL: http://qdrant:6333\n"
                     f"  REALRAG_RETRIEVER_ADMIN_TOKEN: {SEC('REALRAG_RETRIEVER_ADMIN_TOKEN')}\n",
                     "compose service gateway: REALRAG_RETRIEVER_ADMIN_TOKEN carries secret", id="admin-token-for-everyone"),
        pytest.param(f"      REALRAG_METRICS_TOKEN: {SEC('REALRAG_METRICS_TOKEN')}\n", "",
                     "compose service gateway: REALRAG_METRICS_TOKEN is not set", id="open-metrics"),
        pytest.param("    command: [python, -m, services.notifier]\n", "    command: [python, -m, generator_service, worker]\n",
                     "compose service notifier: must run `python -m services.notifier`", id="notifier-runs-the-gpu-worker"),
    ],
)
def test_planted_mistake_is_caught(tmp_path, old, new, expected):
    problems = plant(tmp_path, old, new)
    assert any(expected in p for p in problems), problems


def test_planted_gpu_reservation_in_cpu_override_is_caught(tmp_path):
    override = tmp_path / "cpu.yml"
    override.write_text(v.COMPOSE_CPU_OVERRIDE.read_text().replace("  worker:\n    deploy: !reset {}\n", "  worker:\n", 1))
    problems = v.check_compose(v.render_compose([*v.COMPOSE_FILES, override]), v.load_compose_source(v.COMPOSE_FILES[0]), cpu_only=True)
    assert any("worker: reserves a GPU" in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param("          capabilities: [gpu]\n", "", "missing property 'capabilities'", id="no-capabilities"),
        pytest.param("          count: ${DEPLOY_GPU_COUNT:-1}\n", "          count: 1\n          device_ids: [\"0\"]\n",
                     "exclusive", id="count-and-device-ids"),
    ],
)
def test_compose_itself_rejects_an_invalid_file(tmp_path, old, new, message):
    with pytest.raises(v.ToolError, match=message):
        plant(tmp_path, old, new)


# ---- object storage: docker-compose.minio.yml ---------------------------------------------------

MINIO_TEXT = v.COMPOSE_MINIO_OVERRIDE.read_text()


def test_minio_override_passes_every_check(compose_minio, compose_cpu_minio, compose_source):
    assert v.check_compose_secrets(v.load_compose_source(v.COMPOSE_MINIO_OVERRIDE), v.COMPOSE_MINIO_OVERRIDE.name) == []
    assert v.check_compose(compose_minio, compose_source) == []
    assert v.check_compose(compose_cpu_minio, compose_source, cpu_only=True) == []


def test_minio_override_puts_every_service_on_one_bucket(compose_minio):
    services = compose_minio["services"]
    stores = set()
    for name in v.APP_SERVICES:
        settings = v.build_settings(services[name]["environment"])
        assert settings.artifact_store == "s3" and settings.s3_addressing_style == "path"
        assert settings.s3_endpoint_url == "http://minio:9000"  # the services reach MinIO inside the stack,
        assert settings.s3_public_endpoint_url == "http://localhost:9000"  # clients where it is published
        assert settings.s3_access_key_id == "realrag-app"  # the bucket-only account, not MinIO's root
        assert settings.s3_secret_access_key.get_secret_value() == "CHANGE-ME-s3-secret-access-key"
        stores.add((settings.s3_bucket, settings.s3_prefix))
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert stores == {("realrag", "")}
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["minio"]["ports"][0]["host_ip"] == "127.0.0.1"
    assert services["minio"]["image"].startswith("quay.io/minio/minio:RELEASE.")


def test_minio_needs_its_secrets(tmp_path):
    env = tmp_path / "no-minio.env"
    lines = v.COMPOSE_SECRETS_EXAMPLE.read_text().splitlines()
    env.write_text("\n".join(line for line in lines if not line.startswith("S3_SECRET_ACCESS_KEY=")) + "\n")
    v.render_compose(v.COMPOSE_FILES, env_file=(v.COMPOSE_ENV_EXAMPLE, env))  # the base stack does not need it
    with pytest.raises(v.ToolError, match="S3_SECRET_ACCESS_KEY"):
        v.render_compose([*v.COMPOSE_FILES, v.COMPOSE_MINIO_OVERRIDE], env_file=(v.COMPOSE_ENV_EXAMPLE, env))


def plant_minio(tmp_path: Path, old: str, new: str) -> list[str]:
    assert old in MINIO_TEXT, f"the planted edit no longer applies: {old!r}"
    path = tmp_path / "docker-compose.minio.yml"
    path.write_text(MINIO_TEXT.replace(old, new, 1))
    return [*v.check_compose_secrets(v.load_compose_source(path), path.name),
            *v.check_compose(v.render_compose([*v.COMPOSE_FILES, path]), v.load_compose_source(v.COMPOSE_FILES[0]))]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("  REALRAG_S3_PUBLIC_ENDPOINT_URL: ${DEPLOY_MINIO_PUBLIC_URL:-http://localhost:9000}\n", "",
                     "presigned URLs would be signed for http://minio:9000", id="presigned-for-internal-host"),
        pytest.param("  gateway:\n    environment: *s3-env\n",
                     "  gateway:\n    environment:\n      <<: *s3-env\n      REALRAG_S3_BUCKET: other\n",
                     "must use the same artefact store", id="gateway-on-another-bucket"),
        pytest.param("  worker:\n    environment: *s3-env\n", "  worker:\n    environment:\n      REALRAG_ARTIFACT_STORE: local\n",
                     "must use the same artefact store", id="worker-on-the-volume"),
        pytest.param("  REALRAG_S3_SECRET_ACCESS_KEY: ${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY in deploy/compose.secrets.env",
                     "  REALRAG_S3_SECRET_ACCESS_KEY: ${S3_SECRET_ACCESS_KEY:-minio-secret",
                     "REALRAG_S3_SECRET_ACCESS_KEY holds a literal secret", id="literal-s3-secret-as-default"),
        pytest.param("    restart: on-failure\n", "    restart: unless-stopped\n",
                     "minio-init: a one-shot service must use restart: on-failure", id="one-shot-restarted-forever"),
        pytest.param("      minio:\n        condition: service_healthy", "      minio:\n        condition: service_completed_successfully",
                     "depends_on minio must wait for condition service_healthy", id="waits-for-minio-to-exit"),
        pytest.param('      test: ["CMD", "mc", "ready", "local"]', "      disable: true", "minio: no healthcheck", id="minio-unchecked"),
    ],
)
def test_planted_minio_mistake_is_caught(tmp_path, old, new, expected):
    problems = plant_minio(tmp_path, old, new)
    assert any(expected in p for p in problems), problems
