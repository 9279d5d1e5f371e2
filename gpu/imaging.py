"""Image decoding and encoding at the HTTP boundary, with the size limits that protect the GPU.

Decoding checks the byte size first and the pixel count from the header before any pixel is
decoded, so a decompression bomb is refused cheaply; every refusal is a `BadInputError` (400)
or `PayloadTooLargeError` (413) whose message says what to change.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from gpu.errors import BadInputError, PayloadTooLargeError


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_batch: int = 16


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Encoded image bytes → RGB uint8 HxWx3."""
    if not data:
        raise BadInputError("empty body: send the image bytes (PNG, JPEG, WebP, …)")
    if len(data) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"image is {len(data)} bytes; the limit is {limits.max_body_bytes} bytes"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > limits.max_pixels:
                raise PayloadTooLargeError(
                    f"image is {width}x{height} = {width * height} pixels; the limit is "
                    f"{limits.max_pixels} pixels: downscale it first"
                )
            rgb = img.convert("RGB")
            rgb.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"not a decodable image ({type(exc).__name__})") from exc
    except Image.DecompressionBombError as exc:
        raise PayloadTooLargeError(f"image refused as too large: {exc}") from exc
    if min(width, height) < 8:
        raise BadInputError(f"image is {width}x{height}; both sides must be at least 8 pixels")
    return np.array(rgb, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only


def decode_b64_image(value: object, limits: Limits, what: str = "image") -> np.ndarray:
    if not isinstance(value, str):
        raise BadInputError(f"'{what}' must be a base64-encoded image string")
    if len(value) > limits.max_body_bytes * 4 // 3 + 4:
        raise PayloadTooLargeError(f"'{what}' is larger than {limits.max_body_bytes} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(f"'{what}' is not valid base64") from exc
    return decode_image(data, limits)


def encode_png(array: np.ndarray) -> bytes:
    """uint8 HxW (L), HxWx3 (RGB) or HxWx4 (RGBA) → PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def cutout_rgba(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the mask (0..255) as its alpha channel."""
    return np.concatenate([image, mask[..., None]], axis=2)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
