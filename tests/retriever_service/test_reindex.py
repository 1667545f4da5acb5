"""`realrag index`: deploy a checkpoint, rebuild on a new image tower, atomic alias switch under
concurrent searches, rollback, registration in the models file."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from realrag.training.cli import build_parser, cmd_index
from realrag.training.data import open_image
from retriever_service.checkpoints import CheckpointError, image_tower_fingerprint, save_retriever
from retriever_service.encoder import ClipEncoder
from retriever_service.index.edge_index import EdgeIndex
from retriever_service.index.qdrant_client_index import QdrantClientIndex
from retriever_service.reindex import (
    deployment_record,
    image_tower_for_collection,
    legacy_deployments_path,
    register_retriever,
)
from retriever_service.service import Retriever
from services.registry import get_spec
from services.settings import Settings
from tests.realrag.training.conftest import TINY_CLIP, make_objects

TOP_K = 5


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_checkpoint(path, towers, seed=1):
    """A fine-tuned copy of the tiny base encoder (weights moved as training would), with its card."""
    encoder = ClipEncoder(TINY_CLIP, None, device="cpu")
    base_fp = image_tower_fingerprint(encoder.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.model.named_parameters():
            if name.startswith("visual.") and "image" not in towers:
                continue
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    card = {
        "kind": "reflective",
        "base_encoder": {"id": encoder.id, "model": TINY_CLIP, "pretrained": None},
        "generator": {"key": "tiny-sd"},
    }
    save_retriever(encoder.model, path, card, towers=towers, base_image_fingerprint=base_fp)
    return path, encoder


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return make_objects(tmp_path_factory.mktemp("corpus"), per_object=2)


@pytest.fixture(params=["edge", "qdrant-client"])
def served(request, tmp_path, corpus_dir):
    """A retriever with the tiny corpus ingested through the service's own ingest path."""
    settings = Settings(data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu", collection_alias="imgs")
    if request.param == "edge":
        index = EdgeIndex(settings.qdrant_root, "imgs")
    else:
        index = QdrantClientIndex.local(":memory:", "imgs")
    retriever = Retriever(settings, ClipEncoder(TINY_CLIP, None, device="cpu"), index)
    for folder in sorted(corpus_dir.iterdir()):
        for file in sorted(folder.iterdir()):
            retriever.ingest_image(open_image(str(file)), object_id=folder.name, label=folder.name)
    yield settings, index, retriever
    index.close()


def index_command(argv, settings, index, capsys, hook=None):
    args = build_parser().parse_args(["index", *argv])
    code = cmd_index(args, settings=settings, index=index, hook=hook)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


def test_new_image_tower_rebuilds_and_switches_atomically_under_concurrent_searches(served, tmp_path, capsys):
    settings, index, retriever = served
    checkpoint, trained = make_checkpoint(tmp_path / "ckpt" / "retriever.safetensors", ["text", "image", "temperature"])
    count = index.count()
    query = retriever.encoder.encode_text(["a photo of a red car"])[0].tolist()

    stop = threading.Event()
    rebuilding = threading.Event()
    answers: list[tuple[int, bool]] = []  # (hits, during the rebuild)
    errors: list[BaseException] = []

    def search_forever():
        while not stop.is_set():
            try:
                during = rebuilding.is_set()
                hits = index.search(query, TOP_K)
                answers.append((len(hits), during))
            except BaseException as exc:  # noqa: BLE001 - any failure is a test failure
                errors.append(exc)
                return

    def hold_until_searched(stage, done):
        rebuilding.set()
        deadline = time.monotonic() + 10
        seen = len([a for a in answers if a[1]])
        while len([a for a in answers if a[1]]) < seen + 3 and time.monotonic() < deadline:
            time.sleep(0.005)

    threads = [threading.Thread(target=search_forever) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        code, result = index_command(
            ["--retriever", str(checkpoint), "--batch-size", "4"], settings, index, capsys, hook=hold_until_searched
        )
        rebuilding.clear()
        time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert not errors, errors
    assert code == 0 and result["rebuilt"] and result["points"] == count
    assert result["previous"] == "imgs-v1" and result["collection"] == "imgs-v2"
    assert sum(1 for _, during in answers if during) >= 3, "no search ran during the rebuild"
    assert all(hits == TOP_K for hits, _ in answers), "a search came back short during the switch"
    # the alias moved; the previous collection stays for rollback
    assert index.current_collection() == "imgs-v2"
    assert {"imgs-v1", "imgs-v2"} <= set(index.collections())
    assert index.count() == count
    # the new collection is in the checkpoint's image space
    point = next(iter(index.scroll(batch_size=1)))
    assert point.payload["encoder"] == result["image_space"]
    image = open_image(str(settings.artifact_root / point.payload["image_uri"]))
    hit = index.search(trained.encode_images([image])[0].tolist(), 1)[0]
    assert hit.id == point.id and hit.score == pytest.approx(1.0, abs=1e-4)
    assert image_tower_for_collection(index, "imgs-v2") == result["checkpoint"]
    assert image_tower_for_collection(index, "imgs-v1") is None
    assert not legacy_deployments_path(settings).exists(), "the record lives in the index, not in a pod's data dir"

    code, rolled = index_command(["--rollback"], settings, index, capsys)
    assert code == 0 and rolled == {"rolled_back_from": "imgs-v2", "collection": "imgs-v1"}
    assert index.current_collection() == "imgs-v1" and len(index.search(query, TOP_K)) == TOP_K


def test_text_tower_checkpoint_needs_no_rebuild(served, tmp_path, capsys):
    settings, index, _ = served
    checkpoint, _ = make_checkpoint(tmp_path / "text" / "retriever.safetensors", ["text", "temperature"])
    code, result = index_command(["--retriever", str(checkpoint)], settings, index, capsys)
    assert code == 0 and result["rebuilt"] is False
    assert index.current_collection() == "imgs-v1" and index.collections() == ["imgs-v1"]
    code, forced = index_command(["--retriever", str(checkpoint), "--force"], settings, index, capsys)
    assert code == 0 and forced["rebuilt"] and forced["collection"] == "imgs-v2"


def test_mismatched_or_corrupt_checkpoint_is_refused_and_nothing_changes(served, tmp_path, capsys):
    settings, index, _ = served
    checkpoint, _ = make_checkpoint(tmp_path / "c" / "retriever.safetensors", ["text", "image", "temperature"])
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    code, message = index_command(["--retriever", str(checkpoint)], settings, index, capsys)
    assert code == 2
    assert index.collections() == ["imgs-v1"]
    assert "corrupt" in message
    # a checkpoint of another base encoder than the deployed one is refused before any index work
    config = json.loads(open(TINY_CLIP).read())
    config["embed_dim"] = 32
    (tmp_path / "tiny-clip-32.json").write_text(json.dumps(config))
    other = settings.model_copy(update={"encoder_model": str(tmp_path / "tiny-clip-32.json")})
    good, _ = make_checkpoint(tmp_path / "d" / "retriever.safetensors", ["text", "temperature"])
    code, message = index_command(["--retriever", str(good)], other, index, capsys)
    assert code == 2 and "trained on base encoder 'tiny-clip:random-init'" in message
    assert index.collections() == ["imgs-v1"]


def test_register_names_the_checkpoint_for_its_generator(tmp_path):
    checkpoint, _ = make_checkpoint(tmp_path / "r" / "retriever.safetensors", ["text", "temperature"])
    models_file = tmp_path / "models.toml"
    entry = register_retriever(models_file, "tiny-sd", checkpoint)
    settings = Settings(models_file=models_file)  # after the file exists: settings read the registry
    assert entry["kind"] == "reflective"
    spec = get_spec("tiny-sd", settings)
    packaged = get_spec("tiny-sd", Settings())
    assert spec.retrievers == {"reflective": str(checkpoint.resolve())}
    assert spec.model_dump(exclude={"retrievers"}) == packaged.model_dump(exclude={"retrievers"})
    assert spec.default_retriever == "reflective"
    register_retriever(models_file, "tiny-sd", checkpoint, kind="standard")
    assert set(get_spec("tiny-sd", settings).retrievers) == {"reflective", "standard"}
    with pytest.raises(CheckpointError, match="trained for generator 'tiny-sd', not 'sd15'"):
        register_retriever(models_file, "sd15", checkpoint)


# ---- replicas: the deployed space is shared state ---------------------------------------------------


def fresh_image(seed):
    """An image no corpus holds (ingest deduplicates by content)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def other_replica(settings, index, tmp_path):
    """A second retriever with its own (pod-local) data dir over the same index and artifact store.

    qdrant-client: a second index object over the same Qdrant, alive next to the first (what two
    pods are); edge: the next owner of the shard directory (one process at a time), opened after
    the first let go."""
    pod = Settings(
        data_dir=tmp_path / "pod-b", artifact_dir=settings.artifact_root, encoder_model=TINY_CLIP,
        encoder_device="cpu", collection_alias="imgs",
    )
    if isinstance(index, EdgeIndex):
        index.close()
        shared = EdgeIndex(settings.qdrant_root, "imgs")
    else:
        shared = QdrantClientIndex("imgs", client=index.client)
    return Retriever(pod, ClipEncoder(TINY_CLIP, None, device="cpu"), shared)


def assert_embedded_by(index, encoder, point_id, image):
    """The stored vector of `point_id` is `encoder`'s embedding of `image` (cosine 1 to itself)."""
    hit = index.search(encoder.encode_images([image])[0].tolist(), 1)[0]
    assert hit.id == point_id and hit.score == pytest.approx(1.0, abs=1e-4)


def test_another_replica_ingests_in_the_space_a_reindex_deployed(served, tmp_path, capsys):
    settings, index, retriever = served
    base_space = retriever.encoder.id
    checkpoint, trained = make_checkpoint(tmp_path / "ckpt" / "retriever.safetensors", ["text", "image", "temperature"])
    replica = None
    if isinstance(index, QdrantClientIndex):  # alive before the re-index, as a running pod is
        replica = other_replica(settings, index, tmp_path)
        before = replica.ingest_image(fresh_image(1))
        assert replica.index.get(before.id)["encoder"] == base_space

    code, result = index_command(["--retriever", str(checkpoint), "--batch-size", "4"], settings, index, capsys)
    assert code == 0 and result["rebuilt"] and result["collection"] == "imgs-v2"
    assert result["image_space"] != base_space
    record = deployment_record(index, "imgs-v2")
    assert record["image_tower"] == result["checkpoint"] and record["image_space"] == result["image_space"]

    replica = replica or other_replica(settings, index, tmp_path)
    image = fresh_image(2)
    added = replica.ingest_image(image, label="after-reindex")
    stored = replica.index.get(added.id)
    assert stored["encoder"] == result["image_space"], "the other replica ingested in the old embedding space"
    assert_embedded_by(replica.index, trained, added.id, image)
    assert not legacy_deployments_path(replica.settings).exists()

    # a rollback is seen as well: the old collection carries no record, so the base tower again
    assert replica.index.switch_alias("imgs-v1") == "imgs-v2"
    image = fresh_image(3)
    back = replica.ingest_image(image)
    assert replica.index.get(back.id)["encoder"] == base_space
    assert_embedded_by(replica.index, replica.encoder, back.id, image)
    replica.close()


def test_an_ingest_that_raced_the_alias_switch_lands_in_the_new_collection_too(tmp_path, corpus_dir):
    """The point is written into the collection resolved before the switch, then the alias is read
    again and the point embedded for the collection now behind it."""
    settings = Settings(data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu", collection_alias="imgs")
    index = QdrantClientIndex.local(":memory:", "imgs")
    retriever = Retriever(settings, ClipEncoder(TINY_CLIP, None, device="cpu"), index)
    checkpoint, trained = make_checkpoint(tmp_path / "ckpt" / "retriever.safetensors", ["text", "image", "temperature"])
    index.create_collection("imgs-v2", retriever.encoder.dim)
    index.update_collection_metadata(
        "imgs-v2", {"realrag_deployment": {"image_tower": str(checkpoint), "image_space": "retriever-image:test"}}
    )
    upsert = index.upsert

    def switch_after_first_write(points, collection=None):
        upsert(points, collection=collection)
        if index.current_collection() == "imgs-v1":
            index.switch_alias("imgs-v2")  # what `realrag index` elsewhere does at this moment

    index.upsert = switch_after_first_write  # type: ignore[method-assign]
    image = fresh_image(4)
    added = retriever.ingest_image(image)
    del index.upsert
    old = {p.id: p.payload["encoder"] for p in index.scroll(collection="imgs-v1")}
    new = {p.id: p.payload["encoder"] for p in index.scroll(collection="imgs-v2")}
    assert old == {added.id: retriever.encoder.id} and new == {added.id: "retriever-image:test"}
    assert_embedded_by(index, trained, added.id, image)
    index.close()


def test_a_record_left_in_the_data_dir_by_an_older_release_moves_into_the_index(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu", collection_alias="imgs")
    index = QdrantClientIndex.local(":memory:", "imgs")
    index.ensure(64)
    index.create_collection("imgs-v2", 64)
    entry = {"checkpoint": "/ckpt/r.safetensors", "image_space": "retriever-image:0123", "image_tower": "/ckpt/r.safetensors"}
    legacy = legacy_deployments_path(settings)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"imgs-v2": entry, "imgs-v7": entry}))
    from retriever_service.reindex import migrate_legacy_deployments

    assert migrate_legacy_deployments(settings, index) == ["imgs-v2"]  # imgs-v7 no longer exists
    assert deployment_record(index, "imgs-v2") == entry
    assert migrate_legacy_deployments(settings, index) == []  # once
    index.close()


def test_a_recorded_tower_this_replica_cannot_load_stops_ingest_before_anything_is_stored(tmp_path):
    from retriever_service.service import DeployedTowerUnavailable

    settings = Settings(data_dir=tmp_path / "data", encoder_model=TINY_CLIP, encoder_device="cpu", collection_alias="imgs")
    index = QdrantClientIndex.local(":memory:", "imgs")
    retriever = Retriever(settings, ClipEncoder(TINY_CLIP, None, device="cpu"), index)
    index.create_collection("imgs-v2", retriever.encoder.dim)
    missing = tmp_path / "elsewhere" / "retriever.safetensors"
    index.update_collection_metadata("imgs-v2", {"realrag_deployment": {"image_tower": str(missing), "image_space": "retriever-image:x"}})
    index.switch_alias("imgs-v2")
    with pytest.raises(DeployedTowerUnavailable, match="the model-cache volume"):
        retriever.ingest_image(fresh_image(5))
    assert index.count() == 0
    corpus = settings.artifact_root / "corpus"
    assert not corpus.exists() or not any(corpus.iterdir()), "the image was stored without its point"
    index.close()
