"""Fixtures for the deployment checks: files rendered once per session, offline, no Docker."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from deploy import validate as v


@pytest.fixture(scope="session")
def compose_source() -> dict:
    return v.load_compose_source(v.COMPOSE_FILES[0])


@pytest.fixture(scope="session")
def compose_gpu() -> dict:
    return v.render_compose(v.COMPOSE_FILES)


@pytest.fixture(scope="session")
def compose_cpu() -> dict:
    return v.render_compose([*v.COMPOSE_FILES, v.COMPOSE_CPU_OVERRIDE])


@pytest.fixture(scope="session")
def compose_minio() -> dict:
    return v.render_compose([*v.COMPOSE_FILES, v.COMPOSE_MINIO_OVERRIDE])


@pytest.fixture(scope="session")
def compose_cpu_minio() -> dict:
    return v.render_compose([*v.COMPOSE_FILES, v.COMPOSE_CPU_OVERRIDE, v.COMPOSE_MINIO_OVERRIDE])


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory) -> Path:
    return v.copy_k8s_tree(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="session")
def rendered_overlays(k8s_tree) -> dict[str, list[dict]]:
    return {name: v.render_kustomize(k8s_tree / "overlays" / name) for name in (*v.GPU_OVERLAYS, *v.CPU_OVERLAYS)}


@pytest.fixture(scope="session")
def object_store_overlays(k8s_tree, rendered_overlays) -> dict[str, list[dict]]:
    """The overlays of OBJECT_STORE_OVERLAYS with the object-store component, as a user adds it."""
    return {name: v.render_kustomize(v.overlay_with_components(k8s_tree, name, [v.OBJECT_STORE_COMPONENT],
                                                               v.overlay_namespace(rendered_overlays[name]), v.OBJECT_STORE_CONFIG))
            for name in v.OBJECT_STORE_OVERLAYS}


@pytest.fixture
def eks_s3(object_store_overlays) -> list[dict]:
    """A private deep copy of EKS + object store, for tests that plant a mistake in it."""
    return copy.deepcopy(object_store_overlays["eks"])


@pytest.fixture
def gke(rendered_overlays) -> list[dict]:
    """A private deep copy of the GKE overlay, for tests that plant a mistake in it."""
    return copy.deepcopy(rendered_overlays["gke"])


def find(docs: list[dict], kind: str, name: str) -> dict:
    """The one object of that kind and name; generated ConfigMaps/Secrets match without their hash."""
    hashed = kind in ("ConfigMap", "Secret")
    matches = [d for d in docs if d["kind"] == kind and (d["metadata"]["name"] == name or (
        hashed and d["metadata"]["name"].rsplit("-", 1)[0] == name))]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} matches"
    return matches[0]


def container(docs: list[dict], deployment: str) -> dict:
    return find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
