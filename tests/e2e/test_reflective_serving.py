"""Retriever checkpoints trained for a generator are served per request, and the job says which."""

import os

import httpx
import pytest

from realrag.sample_corpus import sample_corpus
from tests.conftest import TINY_CLIP, png_bytes

from .helpers import wait_for

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from realrag.training import TrainConfig
    from realrag.training.pipeline import run
    from retriever_service.reindex import register_retriever

    root = tmp_path_factory.mktemp("reflective")
    data = root / "data"
    for i, item in enumerate(sample_corpus()):
        folder = data / item.object_id
        folder.mkdir(parents=True, exist_ok=True)
        item.image.save(folder / f"{i}.png")
    models_file = root / "models.toml"
    checkpoints = {}
    for negatives in ("reflective", "inbatch"):
        config = TrainConfig(
            data=data, generator="tiny-sd", encoder_model=TINY_CLIP, work_dir=root / f"work-{negatives}",
            device="cpu", generator_device="cpu", epochs=2, batch_size=4, held_out_fraction=0.25,
            negatives=negatives, compare_standard=False,
        )
        export = run(config)
        checkpoints[negatives] = register_retriever(models_file, "tiny-sd", export)["checkpoint"]
    return models_file, checkpoints


@pytest.fixture(scope="module")
def served(trained, stack_env, tmp_path_factory):
    from realrag.stack import Stack, free_port
    from services.settings import Settings

    models_file, checkpoints = trained
    env = {
        **stack_env,
        "REALRAG_MODELS_FILE": str(models_file),
        "REALRAG_DATA_DIR": str(tmp_path_factory.mktemp("served")),
        "REALRAG_GATEWAY_PORT": str(free_port()),
        "REALRAG_RETRIEVER_PORT": str(free_port()),
    }
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = Settings()
        with Stack(settings, settings.data_dir / "logs").start() as stack:
            with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
                for item in sample_corpus():
                    client.post("/v1/corpus/images", files={"file": ("p.png", png_bytes(item.image), "image/png")},
                                data={"object_id": item.object_id, "label": item.label}).raise_for_status()
                yield client, checkpoints
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize(
    "requested,kind",
    [(None, "reflective"), ("reflective", "reflective"), ("standard", "standard"), ("zero-shot", "zero-shot")],
)
def test_job_records_the_retriever_that_served_it(served, requested, kind):
    client, checkpoints = served
    retrieval = {"top_k": 1} | ({"retriever": requested} if requested else {})
    job = client.post("/v1/generations", json={"prompt": "the Ambrix Ray", "seed": 1, "retrieval": retrieval}).json()
    job = wait_for(client, job["id"])
    assert job["status"] == "succeeded"
    assert job["retriever"]["kind"] == kind
    expected = {"reflective": checkpoints["reflective"], "standard": checkpoints["inbatch"], "zero-shot": None}[kind]
    assert job["retriever"]["checkpoint"] == expected
    assert len(job["references"]) == 1


def test_models_endpoint_lists_the_trained_retrievers(served):
    client, _ = served
    tiny = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["tiny-sd"]
    assert tiny["retrievers"] == ["zero-shot", "reflective", "standard"]
    assert tiny["default_retriever"] == "reflective"
