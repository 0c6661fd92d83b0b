"""Semantic masks from COCO annotations.

Every annotation is decoded by pycocotools (`annToMask`): every part of a multi-part
polygon, crowd RLE compressed or not. The result is one class index per pixel
(0 = background, i = the i-th selected category); its one-hot form is exactly one-hot.

Overlap rule: where objects of different categories claim the same pixel, the object with
the smaller area wins (a smaller object overlapping a larger one is usually in front of
it); on equal areas, the category listed first in the experiment wins.

Crowd regions (`iscrowd: 1`, one RLE over many people) are IGNORE (255): as in COCO's own
evaluation, they count in neither the training loss nor the metrics. A non-crowd object drawn
over a crowd region keeps its class.
"""

from __future__ import annotations

import numpy as np

from flowops.segmentation.preprocess import resize_mask

IGNORE = 255  # flowops.segmentation.evaluation.IGNORE: pixels that count in neither loss nor metrics


def degenerate(ann: dict) -> str | None:
    """Why an annotation cannot be drawn (COCO has a few), or None."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        return None if seg.get("counts") is not None and seg.get("size") else "RLE without counts or size"
    if not isinstance(seg, list) or not seg:
        return "a box only, no segmentation" if ann.get("bbox") else "empty segmentation"
    for part in seg:
        if not isinstance(part, list) or len(part) < 6 or len(part) % 2:
            return f"polygon with {len(part) if isinstance(part, list) else 0} numbers (needs 3 points or more)"
    try:
        if all(_area(part) <= 1e-9 for part in seg):
            return "polygon of zero area (its points are on one line)"
    except (TypeError, ValueError):
        return "polygon with coordinates that are not numbers"
    return None


def _area(part: list) -> float:
    """The shoelace area of one polygon (x0, y0, x1, y1, ...)."""
    xy = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def class_mask(
    coco, image: dict, class_of: dict[int, int], size: int | None = None, skipped: list[str] | None = None
) -> np.ndarray:
    """uint8 class-index mask of one image: (height, width), or (size, size) when size is given.

    `class_of` maps COCO category id -> class index (1..n) for the selected categories.
    Degenerate annotations (empty, polygons of fewer than 3 points) are left out and described in
    `skipped`. With a size, polygons are scaled and rasterised at that size directly (the cache's path:
    a fraction of the work of drawing at full size and shrinking) and RLE masks, which come
    at full size, are shrunk with nearest neighbour; areas for the overlap rule are counted
    at that size.
    """
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]], catIds=list(class_of), iscrowd=None))
    return draw_mask(anns, image, class_of, size, skipped)


def draw_mask(
    anns: list[dict], image: dict, class_of: dict[int, int], size: int | None = None, skipped: list[str] | None = None
) -> np.ndarray:
    """`class_mask` from the image's annotations themselves (what a decoding process is sent)."""
    from pycocotools import mask as mask_utils

    full_h, full_w = image["height"], image["width"]
    height, width = (size, size) if size else (full_h, full_w)
    decoded = []
    for ann in anns:
        if ann["category_id"] not in class_of:
            continue
        why = degenerate(ann)
        if why is not None:  # skipped and counted, never a crash of the whole build
            if skipped is not None:
                skipped.append(f"annotation {ann.get('id')} of {image.get('file_name')}: {why}")
            continue
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            scale = np.array([width / full_w, height / full_h])
            parts = [
                (np.asarray(part, dtype=np.float64).reshape(-1, 2) * scale).ravel().tolist() for part in segmentation
            ]
            pixels = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))
        else:  # RLE, at full size (uncompressed counts are a list), as pycocotools' annToMask reads it
            rle = (
                mask_utils.frPyObjects(segmentation, full_h, full_w)
                if isinstance(segmentation["counts"], list)
                else segmentation
            )
            pixels = mask_utils.decode(rle)
            if size:
                pixels = resize_mask(pixels, size, size)
        pixels = pixels.astype(bool)
        cls = IGNORE if ann.get("iscrowd") else class_of[ann["category_id"]]
        decoded.append((bool(ann.get("iscrowd")), int(pixels.sum()), cls, pixels))
    mask = np.zeros((height, width), dtype=np.uint8)
    # Crowds first (anything drawn over them wins); then largest first and, on equal areas,
    # later-listed categories first, so that the object painted last on any pixel is the one
    # the rule says wins it.
    for _, _, cls, pixels in sorted(decoded, key=lambda t: (not t[0], -t[1], -t[2])):
        mask[pixels] = cls
    return mask


def one_hot(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """(h, w) class indices -> (h, w, n_classes) float32 one-hot; IGNORE pixels are all zeros."""
    table = np.zeros((256, n_classes), dtype=np.float32)
    table[np.arange(n_classes), np.arange(n_classes)] = 1.0
    return table[mask]
