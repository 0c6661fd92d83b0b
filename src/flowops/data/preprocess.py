"""The one preprocessing of images and masks, shared by the cache build and the served model.

Training caches images resized by `resize_image`; the logged pyfunc resizes its input the
same way and maps the predicted mask back with `resize_mask`, so a served model sees what
it was evaluated on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_image(rgb: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """The one resize used in training and serving: PIL bilinear to size x size, uint8."""
    image = Image.fromarray(rgb) if isinstance(rgb, np.ndarray) else rgb
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Class indices resized with nearest neighbour (never mixes classes)."""
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
