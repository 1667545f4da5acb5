"""The artefact-store contract, run against both stores: the local directory and the S3 store on a
real S3-protocol server (moto's standalone server over HTTP, see tests/services/conftest.py).

Every caller (gateway, retriever, worker) gets its store from ``artifact_store(settings)``, so the
stores are built here the same way, from settings.
"""

from __future__ import annotations

import io
import os
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from services.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    InvalidKey,
    LocalArtifactStore,
    artifact_store,
    direct_url,
)
from services.artifacts_s3 import S3ArtifactStore
from services.settings import Settings
from tests.conftest import png_bytes

from .conftest import S3Server

INVALID_KEYS = ["", "/", "/etc/passwd", "../secret.png", "outputs/../../secret.png", "a/..", "..", "a\\b.png", "nul\x00.png"]


def settings_for(**values) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        built = artifact_store(settings_for(data_dir=tmp_path))
        assert isinstance(built, LocalArtifactStore)
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        built = artifact_store(settings_for(data_dir=tmp_path, **server.settings(server.new_bucket(), s3_prefix="realrag/")))
        assert isinstance(built, S3ArtifactStore)
    return built


# --- the contract ---------------------------------------------------------------------------


def test_put_then_get_exists_and_returns_the_clean_key(store):
    data = png_bytes(Image.new("RGB", (8, 6), (10, 20, 30)))
    assert store.put("outputs/job-1/0.png", data) == "outputs/job-1/0.png"
    assert store.exists("outputs/job-1/0.png")
    assert store.get("outputs/job-1/0.png") == data


def test_keys_are_normalised_the_same_way(store):
    assert store.put("corpus//./a.png", b"one") == "corpus/a.png"
    assert store.get("corpus/a.png") == b"one" and store.exists("./corpus/a.png")


def test_put_overwrites(store):
    store.put("outputs/job-2/0.png", b"first version")
    store.put("outputs/job-2/0.png", b"second")
    assert store.get("outputs/job-2/0.png") == b"second"


def test_a_missing_key_is_artifact_not_found(store):
    assert not store.exists("outputs/nope/0.png")
    with pytest.raises(ArtifactNotFound) as raised:
        store.get("outputs/nope/0.png")
    assert isinstance(raised.value, FileNotFoundError)  # what callers of the local store always caught
    store.put("outputs/dir/0.png", b"x")
    assert not store.exists("outputs/dir")  # a "directory" is not an artifact in either store
    with pytest.raises(ArtifactNotFound):
        store.get("outputs/dir")


def test_delete_removes_and_a_missing_key_is_no_error(store):
    store.put("corpus/gone.png", b"bytes")
    store.delete("corpus/gone.png")
    assert not store.exists("corpus/gone.png")
    with pytest.raises(ArtifactNotFound):
        store.get("corpus/gone.png")
    store.delete("corpus/gone.png")
    store.delete("corpus/never-there.png")


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_by_every_operation(store, key):
    for operation in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.exists(key), lambda: store.delete(key)):
        with pytest.raises(InvalidKey):
            operation()


def test_large_and_empty_objects_round_trip(store):
    large = os.urandom(12 * 1024 * 1024 + 7)  # larger than any PNG output, odd size
    store.put("outputs/big/0.bin", large)
    assert store.get("outputs/big/0.bin") == large
    store.put("outputs/empty/0.bin", b"")
    assert store.exists("outputs/empty/0.bin") and store.get("outputs/empty/0.bin") == b""


def test_location_names_the_key(store):
    assert store.location("outputs/j/0.png").endswith("outputs/j/0.png")


# --- what only one store does ------------------------------------------------------------------


def test_local_store_has_files_and_no_direct_url(tmp_path):
    settings = settings_for(data_dir=tmp_path)
    store = artifact_store(settings)
    assert isinstance(store, LocalArtifactStore) and store.root == (tmp_path / "artifacts").resolve()
    store.put("corpus/a.png", b"x")
    assert store.path("corpus/a.png").read_bytes() == b"x"
    assert store.direct_url("corpus/a.png") is None and direct_url(settings, "corpus/a.png") is None


def test_s3_store_writes_under_its_prefix_with_a_content_type(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    store = artifact_store(settings_for(data_dir=tmp_path, **s3_server.settings(bucket, s3_prefix="/team/realrag")))
    other = artifact_store(settings_for(data_dir=tmp_path, **s3_server.settings(bucket)))
    store.put("outputs/j/0.png", b"png bytes")
    assert s3_server.keys(bucket) == ["team/realrag/outputs/j/0.png"]
    assert store.location("outputs/j/0.png") == f"s3://{bucket}/team/realrag/outputs/j/0.png"
    assert not other.exists("outputs/j/0.png")  # no prefix: another key
    head = s3_server.client().head_object(Bucket=bucket, Key="team/realrag/outputs/j/0.png")
    assert head["ContentType"] == "image/png"
    assert not (tmp_path / "artifacts").exists()  # nothing on local disk


def test_presigned_url_downloads_the_png(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    settings = settings_for(data_dir=tmp_path, **s3_server.settings(bucket, s3_presign_ttl_s="900"))
    data = png_bytes(Image.new("RGB", (16, 12), (200, 30, 30)))
    artifact_store(settings).put("outputs/job/0.png", data)

    url = direct_url(settings, "outputs/job/0.png")
    assert url and url.startswith(f"{s3_server.endpoint_url}/{bucket}/outputs/job/0.png?")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Signature"]
    response = httpx.get(url)  # a plain client with no credentials, as a browser
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (16, 12)


def test_presigned_urls_are_signed_for_the_public_endpoint(s3_server, tmp_path):
    """Services reach the bucket at one address (http://minio:9000), clients at another."""
    bucket = s3_server.new_bucket()
    public = s3_server.endpoint_url.replace("127.0.0.1", "localhost")
    settings = settings_for(data_dir=tmp_path, **s3_server.settings(bucket, s3_public_endpoint_url=public))
    artifact_store(settings).put("outputs/job/0.png", b"not really a png")
    url = direct_url(settings, "outputs/job/0.png")
    assert url and url.startswith(f"{public}/{bucket}/")
    assert httpx.get(url).content == b"not really a png"


def test_factory_reuses_one_s3_store_per_configuration(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    first = artifact_store(settings_for(data_dir=tmp_path, **s3_server.settings(bucket)))
    again = artifact_store(settings_for(data_dir=tmp_path / "elsewhere", **s3_server.settings(bucket)))
    different = artifact_store(settings_for(data_dir=tmp_path, **s3_server.settings(bucket, s3_prefix="p")))
    assert first is again and different is not first


def test_a_missing_bucket_is_a_store_error_not_a_missing_key(s3_server, tmp_path):
    store = artifact_store(settings_for(data_dir=tmp_path, **s3_server.settings("realrag-no-such-bucket")))
    with pytest.raises(ArtifactStoreError, match="NoSuchBucket"):
        store.put("outputs/j/0.png", b"x")
    with pytest.raises(ArtifactStoreError, match="NoSuchBucket"):
        store.get("outputs/j/0.png")


def test_an_unreachable_endpoint_is_a_store_error(tmp_path):
    from realrag.stack import free_port

    settings = settings_for(data_dir=tmp_path, artifact_store="s3", s3_bucket="b", s3_region="us-east-1",
                            s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_access_key_id="k",
                            s3_secret_access_key="s", s3_timeout_s=2)
    with pytest.raises(ArtifactStoreError, match="EndpointConnectionError"):
        artifact_store(settings).exists("outputs/j/0.png")


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"artifact_store": "s3"}, "needs s3_bucket"),
        ({"artifact_store": "s3", "s3_bucket": "b", "s3_access_key_id": "k"}, "set both"),
        ({"s3_secret_access_key": "s"}, "set both"),
        ({"s3_prefix": "a/../b"}, "not a key prefix"),
        ({"s3_presign_ttl_s": 8 * 86_400}, "604800"),
        ({"artifact_store": "gcs"}, "'local' or 's3'"),
        ({"s3_addressing_style": "host"}, "'auto', 'path' or 'virtual'"),
    ],
)
def test_invalid_store_settings_fail_at_start_up(values, message):
    with pytest.raises(ValidationError, match=message):
        settings_for(**values)


def test_the_default_is_the_local_store_and_secrets_do_not_print(tmp_path):
    assert settings_for().artifact_store == "local"
    settings = settings_for(artifact_store="s3", s3_bucket="b", s3_access_key_id="AKIA-TEST", s3_secret_access_key="do-not-print")
    store = artifact_store(settings)
    assert "do-not-print" not in repr(settings) and "do-not-print" not in repr(store.config)
