"""/v1/models and REALRAG_SERVED_MODELS: a deployment lists, and accepts, only the models it serves,
from the packaged registry plus REALRAG_MODELS_FILE; workers report the ones they hold in Redis."""

from __future__ import annotations

import re
import uuid

import pytest
from pydantic import ValidationError

from services.registry import loaded_key, record_loaded
from services.settings import Settings


def test_serves_the_default_model_only_unless_told_otherwise(gateway):
    response = gateway.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny-sd"]
    tiny = body["data"][0]
    assert tiny["object"] == "model" and tiny["family"] == "sd" and tiny["max_references"] == 3
    assert tiny["defaults"] == {"steps": 4, "guidance": 5.0, "ip_scale": 0.6, "width": 64, "height": 64}
    assert tiny["retrievers"][0] == "zero-shot" and tiny["default_retriever"] == "zero-shot"
    assert tiny["default"] is True and tiny["dtype"] == "float32"
    assert tiny["loaded"] is False and tiny["loaded_on"] == [], "no worker consumes this test's queue"


def test_other_models_are_rejected_naming_the_served_ones(make_gateway):
    with make_gateway(served_models='["tiny-sd", "tiny-sdxl"]') as gateway:
        assert [m["id"] for m in gateway.get("/v1/models").json()["data"]] == ["tiny-sd", "tiny-sdxl"]
        served = gateway.post("/v1/generations", json={"prompt": "ok", "model": "tiny-sdxl", "retrieval": {"enabled": False}})
        refused = gateway.post("/v1/generations", json={"prompt": "ok", "model": "tiny-sd3", "retrieval": {"enabled": False}})
        openai_refused = gateway.post("/v1/images/generations", json={"prompt": "ok", "model": "sd15"})
    assert served.status_code == 202 and served.json()["model"] == "tiny-sdxl"
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "model_not_served" and error["details"]["served"] == ["tiny-sd", "tiny-sdxl"]
    assert "tiny-sd3" in error["message"] and "tiny-sdxl" in error["message"]
    assert openai_refused.status_code == 400, "the OpenAI route answers its SDK's BadRequestError"
    assert openai_refused.json()["error"]["code"] == "model_not_served" and openai_refused.json()["error"]["param"] == "model"


def test_a_worker_holding_the_model_shows_as_loaded_until_its_entry_expires(gateway, redis_db, queue_name):
    worker = f"test-{uuid.uuid4().hex[:8]}:1"
    record_loaded(redis_db, queue_name, worker, {"tiny-sd": "cuda:0"}, ttl_s=60)
    assert 0 < redis_db.pttl(loaded_key(queue_name, "tiny-sd", worker)) <= 60_000, "a dead worker's entry expires"
    tiny = gateway.get("/v1/models").json()["data"][0]
    assert tiny["loaded"] is True and tiny["loaded_on"] == ["cuda:0"]
    redis_db.delete(loaded_key(queue_name, "tiny-sd", worker))  # what the TTL does for a worker that died
    assert gateway.get("/v1/models").json()["data"][0]["loaded"] is False


@pytest.mark.parametrize(
    ("served", "message"),
    [(["nope"], "unknown model(s) ['nope']"), (["tiny-sdxl"], "default_model 'tiny-sd' is not in served_models"),
     (["*", "tiny-sd"], "stands alone")],
)
def test_a_bad_served_models_setting_fails_at_start_up(served, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(served_models=served, default_model="tiny-sd")


def test_star_serves_every_registry_model_for_development(make_gateway):
    with make_gateway(served_models='["*"]') as gateway:
        ids = [m["id"] for m in gateway.get("/v1/models").json()["data"]]
    assert ids[0] == "tiny-sd" and {"sd15", "tiny-sdxl", "world-sd"} <= set(ids)


def test_models_file_adds_models_and_default_model_moves_the_flag(make_gateway, tmp_path, corpus):
    models_file = tmp_path / "models.toml"
    models_file.write_text(
        '[models.my-tiny]\nfamily = "sd"\nsource = "tiny"\nadapter = "random"\nmax_references = 2\n'
        'default_steps = 2\ndefault_width = 32\ndefault_height = 48\nretrievers = { reflective = "ckpt/reflective.pt" }\n'
    )
    with make_gateway(models_file=str(models_file), default_model="my-tiny", served_models='["my-tiny", "tiny-sd"]') as gateway:
        models = {m["id"]: m for m in gateway.get("/v1/models").json()["data"]}
        created = gateway.post("/v1/generations", json={"prompt": "custom", "retrieval": {"enabled": False}})
    mine = models["my-tiny"]
    assert mine["default"] is True and models["tiny-sd"]["default"] is False
    assert mine["defaults"]["steps"] == 2 and (mine["defaults"]["width"], mine["defaults"]["height"]) == (32, 48)
    assert mine["retrievers"] == ["zero-shot", "reflective"] and mine["default_retriever"] == "reflective"
    # the gateway validates and resolves requests against the same registry
    assert created.status_code == 202 and created.json()["model"] == "my-tiny"
