"""Segmentation's evaluation of a split: per-image confusion matrices and the metrics a run logs.

A **confusion matrix per image** (`truth x predicted` pixel counts at the evaluation size),
pixels labelled IGNORE (COCO crowd regions) left out; summing them gives the split's matrix,
whatever the batch size. The metrics come from the summed matrix with the engine's IoU and
F-score (`flowops.evaluation`): `val_iou.<class>`, `val_miou` (the foreground classes' mean IoU)
and `val_fscore`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from flowops.evaluation import (
    RESAMPLES,
    Evidence,
    Interval,
    foreground_mean,
    paired_bootstrap_of,
    per_class_fscore,
    per_class_iou,
)
from flowops.segmentation.metrics import PRIMARY

IGNORE = 255  # mask value of pixels that count in neither training nor evaluation


def confusion_per_image(
    truth: np.ndarray, predicted: np.ndarray, n_classes: int, names: Sequence[str] | None = None
) -> np.ndarray:
    """(n, C, C) int64 pixel counts, truth by row, prediction by column; IGNORE pixels left out.
    A truth value that is neither a class nor IGNORE is a ValueError naming the image (`names`):
    counted, it would land in the next image's matrix."""
    n = truth.shape[0]
    t = truth.reshape(n, -1).astype(np.int64)
    p = predicted.reshape(n, -1).astype(np.int64)
    valid = t != IGNORE
    wrong = valid & ((t < 0) | (t >= n_classes))
    if wrong.any():
        image = int(np.argmax(wrong.any(1)))
        value = int(t[image][wrong[image]][0])
        name = names[image] if names is not None else f"image {image}"
        raise ValueError(
            f"mask of {name}: value {value} is neither a class (0..{n_classes - 1}) nor {IGNORE} (ignored)"
        )
    index = np.where(valid, t * n_classes + np.clip(p, 0, n_classes - 1), n_classes * n_classes)
    offsets = np.arange(n, dtype=np.int64)[:, None] * (n_classes * n_classes + 1)
    counts = np.bincount((index + offsets).ravel(), minlength=n * (n_classes * n_classes + 1))
    return counts.reshape(n, n_classes * n_classes + 1)[:, :-1].reshape(n, n_classes, n_classes)


def split_metrics(confusion: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """The validation metrics a run logs, from its per-image matrices (n, C, C) or the summed (C, C)."""
    total = confusion.sum(0) if confusion.ndim == 3 else confusion
    iou = per_class_iou(total)
    out = {f"val_iou.{name}": float(v) for name, v in zip(class_names, iou, strict=True) if not np.isnan(v)}
    out[PRIMARY] = float(foreground_mean(iou))
    out["val_fscore"] = float(foreground_mean(per_class_fscore(total)))
    return out


def eval_set_id(content_sha256: str, class_names: list[str], image_size: int) -> str:
    """The evaluation data's identity: the decoded validation arrays, the classes and the size."""
    text = json.dumps([content_sha256, class_names, image_size, IGNORE])
    return hashlib.sha256(text.encode()).hexdigest()


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Interval of val_miou(a) - val_miou(b), a and b being (n, C, C) matrices of the same n images."""
    if a.shape != b.shape or a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"paired bootstrap needs two (n, C, C) arrays of the same images: {a.shape} vs {b.shape}")
    ids = tuple(str(i) for i in range(a.shape[0]))
    return paired_bootstrap_of(
        Evidence(PRIMARY, "confusion", a, ids), Evidence(PRIMARY, "confusion", b, ids), confidence, resamples, seed
    )
