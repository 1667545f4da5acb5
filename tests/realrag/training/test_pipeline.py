"""End to end: `train-retriever` writes report and card, reruns from cache, and `index` deploys it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from realrag.training import run_pipeline
from realrag.training.cli import build_parser, cmd_index, main
from realrag.training.data import open_image
from realrag.training.evaluate import arm_encoder
from retriever_service.checkpoints import read_card
from retriever_service.encoder import ClipEncoder
from retriever_service.index.edge_index import EdgeIndex
from retriever_service.service import Retriever
from services.schemas import SearchRequest
from services.settings import Settings

from .conftest import TINY_CLIP

ARGS = [
    "--generator", "tiny-sd", "--encoder-model", TINY_CLIP, "--device", "cpu", "--generator-device", "cpu",
    "--epochs", "2", "--batch-size", "4", "--lr", "1e-4", "--held-out-fraction", "0.34",
    "--template", "a photo of a {label}", "--template", "a {label}",
]


def test_cli_end_to_end_then_cached_rerun_then_deploy(tiny_data, tmp_path, capsys):
    work = tmp_path / "work"
    argv = ["train-retriever", "--data", str(tiny_data), "--work-dir", str(work), *ARGS]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    export = work / "export" / "tiny-sd-reflective"
    assert summary["export_dir"] == str(export)

    report = json.loads((export / "report.json").read_text())
    assert set(report["arms"]) == {"zero-shot", "standard", "reflective"}
    for metrics in report["arms"].values():
        held_out = metrics["held_out"]
        assert held_out["prompts"] == 4
        assert {"recall@1", "recall@5", "margin", "reflective_above_positive"} <= set(held_out)
    markdown = (export / "report.md").read_text()
    assert "| reflective |" in markdown and "| standard |" in markdown and "| zero-shot |" in markdown
    stages = [t["stage"] for t in report["throughput"]]
    assert stages == ["data", "sample", "embed-corpus", "mine", "train-reflective", "train-inbatch", "evaluate", "export"]

    card = read_card(export / "retriever.safetensors")
    assert card["kind"] == "reflective" and card["generator"]["key"] == "tiny-sd"
    assert card["base_encoder"]["id"] == "tiny-clip:random-init"
    assert card["data_hash"] == report["data"]["data_hash"]
    assert card["hyperparameters"]["negatives"] == "reflective"
    assert card["metrics"] == report["arms"]["reflective"]
    assert card["towers"] == ["temperature", "text"]

    # a rerun does no work: every stage is a cache hit
    assert main(argv) == 0
    rerun = json.loads(capsys.readouterr().out)["throughput"]
    cached = {t["stage"]: t for t in rerun}
    for stage in ("sample", "embed-corpus", "mine", "train-reflective", "train-inbatch"):
        assert cached[stage]["done"] == 0 and cached[stage]["cached"] > 0, cached[stage]

    # deploy: register for tiny-sd; the text tower alone needs no re-embedding
    settings = Settings(
        data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu", models_file=tmp_path / "models.toml"
    )
    index = EdgeIndex(settings.qdrant_root, settings.collection_alias)
    retriever = Retriever(settings, ClipEncoder(TINY_CLIP, None, device="cpu"), index)
    for folder in sorted(tiny_data.iterdir()):
        for file in sorted(folder.iterdir()):
            retriever.ingest_image(open_image(str(file)), object_id=folder.name, label=folder.name)
    args = build_parser().parse_args(["index", "--retriever", str(export), "--register", "tiny-sd"])
    assert cmd_index(args, settings=settings, index=index) == 0
    deployed = json.loads(capsys.readouterr().out)
    assert deployed["rebuilt"] is False and deployed["registered"]["kind"] == "reflective"

    # the service now answers tiny-sd's queries with the reflective text tower
    query = "a photo of a red car"
    response = retriever.search(SearchRequest(query=query, model="tiny-sd", top_k=3))
    assert response.retriever.kind == "reflective"
    assert response.retriever.checkpoint == str((export / "retriever.safetensors").resolve())
    trained = ClipEncoder(TINY_CLIP, None, device="cpu", text_tower=str(export / "retriever.safetensors"))
    expected = index.search(trained.encode_text([query])[0].tolist(), 3)
    assert [h.id for h in response.hits] == [h.id for h in expected]
    zero_shot = retriever.search(SearchRequest(query=query, model="tiny-sd", retriever="zero-shot", top_k=3))
    assert zero_shot.retriever.kind == "zero-shot"
    index.close()


def test_standard_only_run_and_trained_image_tower_redeploys_the_corpus(tiny_data, tiny_sd, base_config, tmp_path, capsys):
    config = base_config(negatives="inbatch", train_image_tower=True, epochs=1)
    result = run_pipeline(config, generator=tiny_sd)
    assert result.export_dir.name == "tiny-sd-standard"
    assert set(result.report["arms"]) == {"zero-shot", "standard"}
    card = read_card(result.weights)
    assert card["kind"] == "standard" and card["towers"] == ["image", "temperature", "text"]
    assert card["image_tower_sha256"] != card["base_image_tower_sha256"]

    # the served encoder with this checkpoint embeds text like the trained arm
    served = ClipEncoder(TINY_CLIP, None, device="cpu", text_tower=str(result.weights))
    trained = arm_encoder(config, result.runs["inbatch"])
    assert np.allclose(served.encode_text(["a red car"]), trained.encode_text(["a red car"]), atol=1e-6)

    # deploying it rebuilds the collection with the trained image tower
    settings = Settings(data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu")
    index = EdgeIndex(settings.qdrant_root, settings.collection_alias)
    retriever = Retriever(settings, ClipEncoder(TINY_CLIP, None, device="cpu"), index)
    for file in sorted((tiny_data / "red_car").iterdir()):
        retriever.ingest_image(open_image(str(file)), object_id="red_car")
    args = build_parser().parse_args(["index", "--retriever", str(result.weights)])
    assert cmd_index(args, settings=settings, index=index) == 0
    deployed = json.loads(capsys.readouterr().out)
    assert deployed["rebuilt"] and deployed["points"] == 3
    assert index.current_collection() == deployed["collection"] != deployed["previous"]
    index.close()


def test_bad_config_is_a_clear_cli_error(tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="invalid train-retriever configuration"):
        main(["train-retriever", "--data", str(tiny_data), "--generator", "tiny-sd", "--epochs", "0"])
