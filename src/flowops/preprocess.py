"""The one preprocessing of images and masks, shared by the cache build and the served model.

Training caches images resized by `resize_image`; the logged pyfunc resizes its input the
same way and maps the predicted mask back with `resize_mask`, so a served model sees what
it was evaluated on.

Methods (recorded in the cache entry, the run's `flowops.preprocess` tag and the model's
metadata, so a served model shrinks its input as its training data were shrunk):

- `pil-bilinear`: decode at full size, PIL bilinear (antialiased) to size x size.
- `jpeg-draft+pil-bilinear` (the cache's method now): where the image is at least twice the
  target on its shorter side, libjpeg decodes it already shrunk by 2, 4 or 8 in the DCT domain
  (`Image.draft`: a fraction of the decode work), then PIL bilinear. For images within 2x of the
  target (COCO's 640x480 at 256) the two methods are the same. The served model, which gets
  decoded pixels, shrinks by the same factor with a box filter (`Image.reduce`): libjpeg's
  scaled decode is a box-like low-pass, and the two differ by under half a grey level on average
  (tests/unit/test_preprocess.py measures the bound).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

PLAIN = "pil-bilinear"
DRAFT = "jpeg-draft+pil-bilinear"
METHODS = (PLAIN, DRAFT)
METHOD = DRAFT  # what the cache builds with


def draft_scale(width: int, height: int, size: int, method: str = METHOD) -> int:
    """The DCT-domain shrink factor (1, 2, 4 or 8): the largest that keeps the shorter side >= size."""
    if method != DRAFT:
        return 1
    return next((s for s in (8, 4, 2) if min(width, height) >= s * size), 1)


def decode_for(data: bytes, size: int, method: str = METHOD) -> tuple[tuple[int, int], Image.Image]:
    """(upright full size, upright RGB image) of encoded bytes, decoded for a target of size x size.

    JPEGs at least twice the target are decoded shrunk in the DCT domain under the draft method;
    the full size (EXIF orientation applied) is what annotations are checked against.
    """
    im = Image.open(io.BytesIO(data))
    full = (im.height, im.width) if _turned(im) else (im.width, im.height)
    scale = draft_scale(im.width, im.height, size, method) if im.format == "JPEG" else 1
    if scale > 1:
        im.draft("RGB", (math.ceil(im.width / scale), math.ceil(im.height / scale)))
    return full, upright(im)


def shrink(image: np.ndarray, size: int, method: str = PLAIN) -> np.ndarray:
    """The served model's preprocessing of decoded pixels: as `decode_for` + `resize_image` did in training."""
    scale = draft_scale(image.shape[1], image.shape[0], size, method)
    pil = Image.fromarray(image)
    if scale > 1:
        pil = pil.reduce(scale)
    return resize_image(pil, size)


def _turned(image: Image.Image) -> bool:
    """Does EXIF orientation swap width and height (orientations 5-8)?"""
    try:
        return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # an unreadable EXIF block is ignored, as exif_transpose ignores it
        return False


def upright(image: Image.Image) -> Image.Image:
    """The image as people see it: EXIF orientation applied (a phone photo stored sideways is turned),
    in RGB. The one decode step shared by the cache build, the served model's HTTP input and the report."""
    from PIL import ImageOps

    turned = ImageOps.exif_transpose(image) or image
    return turned if turned.mode == "RGB" else turned.convert("RGB")


def resize_image(rgb: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """The one resize used in training and serving: PIL bilinear to size x size, uint8."""
    image = Image.fromarray(rgb) if isinstance(rgb, np.ndarray) else rgb
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Class indices resized with nearest neighbour (never mixes classes)."""
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
