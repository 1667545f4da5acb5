"""Safe decoding of untrusted image bytes (uploads, corpus ingest)."""

from __future__ import annotations

import io
import warnings

from PIL import Image

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")


class ImageRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode PNG/JPEG/WEBP bytes into an RGB image, refusing bombs, other formats and junk."""
    if not data:
        raise ImageRejected("empty_image", "the image is empty")
    if len(data) > max_bytes:
        raise ImageRejected("image_too_large", f"image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    "image_too_many_pixels", f"image is {width}x{height}; the limit is {max_pixels} pixels"
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("image_too_many_pixels", str(exc)) from exc
    except Exception as exc:  # Pillow raises several types for junk (python-pillow/Pillow#9814)
        raise ImageRejected("invalid_image", "not a decodable PNG, JPEG or WEBP image") from exc
    return image.convert("RGB")


def to_png(image: Image.Image) -> bytes:
    """Canonical re-encoding: strips metadata; the bytes are the content hash's input."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
