import json
import subprocess
import sys

import pytest
from PIL import Image

from realrag.sample_corpus import sample_corpus


def realrag(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "realrag.cli", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_lists_the_subcommands():
    out = realrag("--help").stdout
    for command in ("serve", "gateway", "retriever", "worker", "ingest", "generate", "probe"):
        assert command in out


def test_generate_locally_with_references(tmp_path):
    ref = tmp_path / "ref.png"
    sample_corpus()[0].image.save(ref)
    result = realrag(
        "generate",
        "--model",
        "tiny-sd",
        "--prompt",
        "a car",
        "--ref",
        str(ref),
        "--seed",
        "3",
        "--width",
        "48",
        "--height",
        "64",
        "--out",
        str(tmp_path / "out.png"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    image = Image.open(summary["outputs"][0])
    assert image.size == (48, 64)


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-omnigen"])
def test_generate_locally_with_every_tiny_twin(tmp_path, model):
    ref = tmp_path / "ref.png"
    sample_corpus()[1].image.save(ref)
    out = tmp_path / f"{model}.png"
    result = realrag(
        "generate", "--model", model, "--prompt", "a car", "--ref", str(ref), "--width", "64", "--height", "64", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (64, 64)


def test_generate_unknown_model_fails_clearly(tmp_path):
    result = realrag("generate", "--model", "nope", "--prompt", "x", "--out", str(tmp_path / "o.png"))
    assert result.returncode != 0
    assert "nope" in result.stderr


@pytest.mark.slow
def test_ingest_folder_into_the_running_retriever(tmp_path, stack):
    for item in sample_corpus(photos_per_object=1, seed=99):
        folder = tmp_path / "corpus" / item.object_id
        folder.mkdir(parents=True)
        item.image.save(folder / "1.png")
    (tmp_path / "corpus" / "quenta-sprite" / "broken.png").write_bytes(b"junk")
    url = stack.env["REALRAG_RETRIEVER_URL"]
    first = realrag("ingest", str(tmp_path / "corpus"), "--retriever-url", url)
    assert json.loads(first.stdout.strip().splitlines()[-1]) == {"new": 4, "duplicate": 0, "rejected": 1}
    assert first.returncode == 1, "a rejected file is reported and fails the command"
    (tmp_path / "corpus" / "quenta-sprite" / "broken.png").unlink()
    again = realrag("ingest", str(tmp_path / "corpus"), "--retriever-url", url)
    assert again.returncode == 0
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"new": 0, "duplicate": 4, "rejected": 0}


@pytest.mark.slow
def test_worker_probe_reads_the_heartbeat(stack):
    env = {**stack.env}
    live = realrag("probe", "worker", "--liveness", "--max-age-s", "3600", env=env)
    assert live.returncode == 0, live.stdout
    ready = realrag("probe", "worker", "--readiness", env=env)
    assert ready.returncode == 0, ready.stdout
    stale = realrag("probe", "worker", "--liveness", "--max-age-s", "0", env=env)
    assert stale.returncode == 1
    missing = realrag("probe", "worker", "--liveness", env={**env, "REALRAG_HEARTBEAT_FILE": "/nonexistent/hb"})
    assert missing.returncode == 1 and "no heartbeat" in missing.stdout


def test_ingest_direct_into_the_embedded_index(tmp_path):
    import os

    from tests.conftest import TINY_CLIP

    for item in sample_corpus(photos_per_object=2, seed=5):
        folder = tmp_path / "corpus" / item.object_id
        folder.mkdir(parents=True, exist_ok=True)
        item.image.save(folder / f"{len(list(folder.iterdir()))}.png")
    env = {**os.environ, "REALRAG_DATA_DIR": str(tmp_path / "data"), "REALRAG_ENCODER_MODEL": TINY_CLIP}
    result = realrag("ingest", "--direct", str(tmp_path / "corpus"), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"new": 8, "duplicate": 0, "rejected": 0}

    from retriever_service.index.edge_index import EdgeIndex

    index = EdgeIndex(tmp_path / "data" / "qdrant", "realrag-images")
    assert index.count() == 8
    assert {p.payload["object_id"] for p in index.scroll()} == {"zorblat-x1", "quenta-sprite", "helvor-mk2", "ambrix-ray"}
    index.close()
