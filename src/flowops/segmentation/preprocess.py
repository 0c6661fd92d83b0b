"""The one preprocessing of images and masks, shared by the cache build and the served model.

Training caches images resized by `resize_image`; the logged pyfunc resizes its input the
same way and maps the predicted mask back with `resize_mask`, so a served model sees what
it was evaluated on.

Methods (recorded in the cache entry, the run's `flowops.preprocess` tag and the model's
metadata, so a served model shrinks its input as its training data were shrunk):

- `pil-bilinear`: decode at full size, PIL bilinear (antialiased) to size x size.
- `jpeg-draft+pil-bilinear`: where the image is at least twice the target on its shorter side,
  libjpeg decodes it already shrunk by 2, 4 or 8 in the DCT domain (`Image.draft`), then PIL
  bilinear. For images within 2x of the target (COCO's 640x480 at 256) the same as plain.
- `jpeg-draft-near+pil-bilinear` (the cache's method now): the same, but a shrink is taken while
  the shorter side keeps at least 15/16 of the target (COCO's 640x480 at 256 is decoded at
  320x240, then stretched to 256 rows). It gives up the top 1/16 of the vertical frequencies,
  which the bilinear filter already attenuates, for a resize from a quarter of the pixels:
  ~1.0 ms less per 640x480 image, 1.3 grey levels from plain on average on natural photos
  (docs/BENCHMARKS.md, "Preprocessing methods"). COCO's 640x427 and 500x375 are not shrunk.

The served model, which gets decoded pixels, shrinks by the method's factor with a box filter
(`Image.reduce`): libjpeg's scaled decode is a box-like low-pass, and the two differ by about
half a grey level on natural photos (tests/unit/test_preprocess.py bounds it).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

PLAIN = "pil-bilinear"
DRAFT = "jpeg-draft+pil-bilinear"
NEAR = "jpeg-draft-near+pil-bilinear"
METHODS = (PLAIN, DRAFT, NEAR)
METHOD = NEAR  # what the cache builds with


def draft_scale(width: int, height: int, size: int, method: str = METHOD) -> int:
    """The DCT-domain shrink factor (1, 2, 4 or 8): the largest that keeps the shorter side >= size
    (draft), or >= 15/16 of size (near)."""
    if method == DRAFT:
        return next((s for s in (8, 4, 2) if min(width, height) >= s * size), 1)
    if method == NEAR:
        return next((s for s in (8, 4, 2) if 16 * min(width, height) >= 15 * s * size), 1)
    return 1


def decode_for(data: bytes, size: int, method: str = METHOD) -> tuple[tuple[int, int], Image.Image]:
    """(upright full size, upright RGB image) of encoded bytes, decoded for a target of size x size.

    JPEGs at least twice the target are decoded shrunk in the DCT domain under the draft method;
    the full size (EXIF orientation applied) is what annotations are checked against.
    """
    im = Image.open(io.BytesIO(data))
    orientation = _orientation(im)
    full = (im.height, im.width) if orientation in (5, 6, 7, 8) else (im.width, im.height)
    scale = draft_scale(im.width, im.height, size, method) if im.format == "JPEG" else 1
    if scale > 1:
        im.draft("RGB", (math.ceil(im.width / scale), math.ceil(im.height / scale)))
    return full, upright(im, orientation)


def shrink(image: np.ndarray, size: int, method: str = PLAIN) -> np.ndarray:
    """The served model's preprocessing of decoded pixels: as `decode_for` + `resize_image` did in training."""
    scale = draft_scale(image.shape[1], image.shape[0], size, method)
    pil = Image.fromarray(image)
    if scale > 1:
        pil = pil.reduce(scale)
    return resize_image(pil, size)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: as stored; 5-8 swap width and height)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block is ignored, as exif_transpose ignores it
        return 1
    return value if isinstance(value, int) else 1


def upright(image: Image.Image, orientation: int | None = None) -> Image.Image:
    """The image as people see it: EXIF orientation applied (a phone photo stored sideways is turned),
    in RGB. The one decode step shared by the cache build, the served model's HTTP input and the report.
    An upright image is not copied (exif_transpose copies it: ~0.8 ms of a 640x480 image's 2.3)."""
    from PIL import ImageOps

    if orientation is None:
        orientation = _orientation(image)
    turned = (ImageOps.exif_transpose(image) or image) if orientation in range(2, 9) else image
    return turned if turned.mode == "RGB" else turned.convert("RGB")


def resize_image(rgb: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """The one resize used in training and serving: PIL bilinear to size x size, uint8."""
    image = Image.fromarray(rgb) if isinstance(rgb, np.ndarray) else rgb
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Class indices resized with nearest neighbour (never mixes classes)."""
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
