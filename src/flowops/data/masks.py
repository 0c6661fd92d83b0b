"""Semantic masks from COCO annotations.

Every annotation is decoded by pycocotools (`annToMask`): every part of a multi-part
polygon, crowd RLE compressed or not. The result is one class index per pixel
(0 = background, i = the i-th selected category); its one-hot form is exactly one-hot.

Overlap rule: where objects of different categories claim the same pixel, the object with
the smaller area wins (a smaller object overlapping a larger one is usually in front of
it); on equal areas, the category listed first in the experiment wins.
"""

from __future__ import annotations

import numpy as np


def class_mask(coco, image: dict, class_of: dict[int, int]) -> np.ndarray:
    """uint8 (height, width) class-index mask of one image.

    `class_of` maps COCO category id -> class index (1..n) for the selected categories.
    """
    ann_ids = coco.getAnnIds(imgIds=[image["id"]], catIds=list(class_of), iscrowd=None)
    decoded = []
    for ann in coco.loadAnns(ann_ids):
        pixels = coco.annToMask(ann).astype(bool)
        decoded.append((int(pixels.sum()), class_of[ann["category_id"]], pixels))
    mask = np.zeros((image["height"], image["width"]), dtype=np.uint8)
    # Paint largest first and, on equal areas, later-listed categories first, so that the
    # object painted last on any pixel is the one the rule says wins it.
    for _, cls, pixels in sorted(decoded, key=lambda t: (-t[0], -t[1])):
        mask[pixels] = cls
    return mask


def one_hot(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """(h, w) class indices -> (h, w, n_classes) float32 one-hot."""
    return np.eye(n_classes, dtype=np.float32)[mask]
