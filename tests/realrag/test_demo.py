"""The demo's picture and the world defaults of `realrag serve` (the full demo runs in `make run`)."""

from PIL import Image

from realrag.demo import WORLD_ASSETS, serve_defaults, side_by_side, world_installed
from services.settings import Settings


def test_serve_defaults_to_the_installed_world_unless_a_model_or_encoder_is_chosen(monkeypatch):
    for name in ("REALRAG_DEFAULT_MODEL", "REALRAG_SERVED_MODELS", "REALRAG_ENCODER_MODEL", "REALRAG_ENCODER_PRETRAINED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REALRAG_ENV_FILE", "")
    defaults = serve_defaults(Settings(_env_file=None))
    if world_installed():
        assert defaults["REALRAG_DEFAULT_MODEL"] == "world-sd"
        assert defaults["REALRAG_ENCODER_PRETRAINED"] == str(WORLD_ASSETS / "world-clip.safetensors")
    else:
        assert defaults == {}
    monkeypatch.setenv("REALRAG_DEFAULT_MODEL", "tiny-sd")
    assert serve_defaults(Settings(_env_file=None)) == {}
    monkeypatch.delenv("REALRAG_DEFAULT_MODEL")
    monkeypatch.setenv("REALRAG_ENCODER_MODEL", "ViT-B-32")  # another encoder: the world corpus would not match
    assert serve_defaults(Settings(_env_file=None)) == {}


def test_side_by_side_shows_every_tile(tmp_path):
    colours = ["red", "blue", "green", "yellow"]
    tiles = [(Image.new("RGB", (32, 32), c), c) for c in colours]
    path = side_by_side(tiles[0][0], "asked", tiles[1:2], tiles[2:], tmp_path / "x" / "sbs.png", cell=64)
    with Image.open(path) as im:
        assert im.width >= 4 * 64 and im.height > 64
        middles = [im.getpixel((8 + k * 72 + 32, 8 + 32)) for k in range(4)]
    assert middles == [Image.new("RGB", (1, 1), c).getpixel((0, 0)) for c in colours]
