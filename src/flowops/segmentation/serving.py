"""The segmentation template's image adapter for `flowops serve` (entry point `segmentation` of
`flowops.serving`): an upload decoded and shrunk exactly as the training cache decoded its images."""

from __future__ import annotations

import numpy as np

from flowops.plugins import ImageAdapter
from flowops.segmentation.preprocess import PLAIN, decode_for, resize_mask


def rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean mask."""
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


ADAPTER = ImageAdapter(decode=decode_for, resize_mask=resize_mask, encode_mask=rle, default_method=PLAIN)
