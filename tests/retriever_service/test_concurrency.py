"""The retriever under concurrent requests (micro-batched: services/batching.py), and the trimmed text tower."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch
from PIL import Image

from retriever_service.encoder import ClipEncoder
from services.settings import get_settings
from tests.conftest import TINY_CLIP, png_bytes


def test_trimmed_text_tower_gives_the_full_towers_features():
    torch.manual_seed(0)
    encoder = ClipEncoder(TINY_CLIP)
    texts = ["a", "a photo of the Quenta Sprite by the sea", "the red cybertruck parked at night"]
    tokens = encoder.tokenizer(texts)
    with torch.no_grad():
        full = encoder.model.encode_text(tokens)
        trimmed = encoder._text_features(tokens)
    assert torch.allclose(full, trimmed, atol=1e-5)
    assert encoder.encode_text(texts).shape == (3, encoder.dim)


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    monkeypatch.setenv("REALRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REALRAG_ENCODER_MODEL", TINY_CLIP)
    monkeypatch.setenv("REALRAG_ENCODER_DEVICE", "cpu")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_concurrent_uploads_and_searches_answer_like_sequential_ones(settings_env):
    from retriever_service.app import app

    images = [png_bytes(Image.new("RGB", (32, 32), (i * 20, 255 - i * 20, 7))) for i in range(8)]

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://retriever") as client:
                # the first image twice: one new point, one duplicate, whatever batch they land in
                uploads = await asyncio.gather(
                    *(client.post("/v1/images", files={"file": ("p.png", data, "image/png")}, data={"label": "x"})
                      for data in [*images, images[0]])
                )
                searches = await asyncio.gather(
                    *(client.post("/v1/search", json={"query": f"photo {i}", "top_k": 3}) for i in range(6)),
                    client.post("/v1/search", json={"query": "x", "top_k": 3, "retriever": "reflective"}),
                )
                return uploads, searches

    uploads, searches = asyncio.run(main())
    assert sorted(r.status_code for r in uploads) == [200] + [201] * 8
    assert len({r.json()["id"] for r in uploads}) == 8
    assert [r.status_code for r in searches] == [200] * 6 + [422]  # a bad request fails alone
    assert all(len(r.json()["hits"]) == 3 for r in searches[:6])
    assert searches[-1].json()["error"]["code"] == "unknown_retriever"
