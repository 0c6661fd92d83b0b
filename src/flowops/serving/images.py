"""What `flowops serve` reads and answers for an image model: uploads in, class masks as JSON out
(decoded and encoded by the model's template: flowops.plugins.ImageAdapter)."""

from __future__ import annotations

import io
import re

import numpy as np

from flowops.plugins import ImageAdapter, image_adapter
from flowops.serving.follower import Loaded

IMAGE_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
MAX_SIDE = 65_535  # JPEG's own limit; a PNG of 1 x 25,000,000 pixels took 7 s and 1.8 GB to shrink


class BadImage(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_image(
    body: bytes, max_pixels: int, size: int = 0, method: str = "", adapter: ImageAdapter | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 array, upright (width, height)) of a JPEG or PNG; BadImage(400/413) for anything else.

    With the model's image size and preprocessing method, a large JPEG is decoded shrunk in the
    DCT domain exactly as the training cache decoded its images: by the model's template's image
    adapter (`adapter`, else the installed one: flowops.plugins.image_adapter).
    """
    from PIL import Image

    adapter = adapter or image_adapter()
    if adapter is None:
        raise BadImage(415, "no installed template decodes images: POST the model's input as JSON to /invocations")

    if not body:
        raise BadImage(400, "empty body: send a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(body)) as im:
            if im.format not in ("JPEG", "PNG"):
                raise BadImage(400, f"unsupported image format {im.format}: send a JPEG or PNG")
            if im.width * im.height > max_pixels:
                raise BadImage(
                    413,
                    f"image is {im.width}x{im.height} = {im.width * im.height} pixels, over the limit of {max_pixels}",
                )
            if max(im.width, im.height) > MAX_SIDE:
                raise BadImage(413, f"image is {im.width}x{im.height}: a side over {MAX_SIDE} pixels")
        full, rgb = adapter.decode(
            body, size or 1, method or adapter.default_method
        )  # EXIF orientation applied, as in training
        return np.asarray(rgb), full
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses it at open, before our own bound: too large
        raise BadImage(413, f"image is too large: {exc}".split(" could be decompression bomb")[0]) from None
    except Exception as exc:  # PIL names its internal buffer object (<_io.BytesIO object at 0x...>): not ours to show
        text = re.sub(r"\s*<[^<>]* object at 0x[0-9a-f]+>", "", str(exc)).strip() or type(exc).__name__
        raise BadImage(400, f"not a readable image: {text}") from None


def describe(loaded: Loaded, mask: np.ndarray, name: str, alias: str) -> dict:
    """/predict's JSON answer: each class's share of the pixels, and each class's mask as its
    template's image adapter encodes it (segmentation: compressed RLE)."""
    adapter = loaded.adapter
    assert adapter is not None  # only image models are described
    total = mask.size
    fractions, masks = {}, {}
    for index, cls in enumerate(loaded.class_names):
        pixels = mask == index
        fractions[cls] = round(float(pixels.sum()) / total, 6)
        if index and pixels.any():
            masks[cls] = adapter.encode_mask(pixels)
    return {
        "model": name,
        "alias": alias,
        "version": loaded.version,
        "run_id": loaded.run_id,
        "class_names": loaded.class_names,
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "fractions": fractions,
        "masks": masks,
    }
