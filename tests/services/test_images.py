import io

import pytest
from PIL import Image

from services.images import ImageRejected, decode_image, to_png

LIMITS = dict(max_bytes=1_000_000, max_pixels=512 * 512)


def encode(image, fmt):
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_decode_to_rgb(fmt):
    image = decode_image(encode(Image.new("RGBA", (20, 10), (9, 8, 7, 255)), fmt if fmt != "JPEG" else "PNG"), **LIMITS)
    assert image.mode == "RGB" and image.size == (20, 10)
    assert decode_image(encode(Image.new("RGB", (20, 10)), fmt), **LIMITS).size == (20, 10)


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", "empty_image"),
        (b"hello", "invalid_image"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "invalid_image"),
        (encode(Image.new("RGB", (8, 8)), "BMP"), "invalid_image"),
        (encode(Image.new("RGB", (600, 600)), "PNG"), "image_too_many_pixels"),
        (encode(Image.new("RGB", (64, 64)), "PNG")[:60], "invalid_image"),
    ],
)
def test_rejections_have_codes(data, code):
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **LIMITS)
    assert info.value.code == code


def test_size_limit_before_decoding():
    with pytest.raises(ImageRejected) as info:
        decode_image(b"x" * 2_000_000, **LIMITS)
    assert info.value.code == "image_too_large"


def test_canonical_png_is_stable_and_strips_metadata():
    image = Image.new("RGB", (16, 16), (200, 10, 10))
    assert to_png(image) == to_png(image.copy())
