"""The one preprocessing of images and masks, shared by the cache build and the served model.

Training caches images resized by `resize_image`; the logged pyfunc resizes its input the
same way and maps the predicted mask back with `resize_mask`, so a served model sees what
it was evaluated on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


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
