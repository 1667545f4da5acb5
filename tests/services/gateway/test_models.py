"""/v1/models: what this deployment serves, from the packaged registry plus REALRAG_MODELS_FILE."""

from __future__ import annotations

import tomllib

from services.registry import PACKAGED_MODELS


def test_lists_every_packaged_model_with_its_defaults(gateway):
    response = gateway.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    with PACKAGED_MODELS.open("rb") as fh:
        assert set(models) == set(tomllib.load(fh)["models"])
    tiny = models["tiny-sd"]
    assert tiny["object"] == "model" and tiny["family"] == "sd" and tiny["max_references"] == 3
    assert tiny["defaults"] == {"steps": 4, "guidance": 5.0, "ip_scale": 0.6, "width": 64, "height": 64}
    assert tiny["retrievers"][0] == "zero-shot" and tiny["default_retriever"] == "zero-shot"
    assert [m["id"] for m in body["data"] if m["default"]] == ["tiny-sd"]


def test_models_file_adds_models_and_default_model_moves_the_flag(make_gateway, tmp_path, corpus):
    models_file = tmp_path / "models.toml"
    models_file.write_text(
        '[models.my-tiny]\nfamily = "sd"\nsource = "tiny"\nadapter = "random"\nmax_references = 2\n'
        'default_steps = 2\ndefault_width = 32\ndefault_height = 48\nretrievers = { reflective = "ckpt/reflective.pt" }\n'
    )
    with make_gateway(models_file=str(models_file), default_model="my-tiny") as gateway:
        models = {m["id"]: m for m in gateway.get("/v1/models").json()["data"]}
        created = gateway.post("/v1/generations", json={"prompt": "custom", "retrieval": {"enabled": False}})
    mine = models["my-tiny"]
    assert mine["default"] is True and models["tiny-sd"]["default"] is False
    assert mine["defaults"]["steps"] == 2 and (mine["defaults"]["width"], mine["defaults"]["height"]) == (32, 48)
    assert mine["retrievers"] == ["zero-shot", "reflective"] and mine["default_retriever"] == "reflective"
    # the gateway validates and resolves requests against the same registry
    assert created.status_code == 202 and created.json()["model"] == "my-tiny"
