"""Segmentation evaluation over a whole split, and how sure a difference between two models is.

numpy only (no TensorFlow): training computes it, and the report and `flowops promote` recompute
intervals from the stored per-image confusion matrices.

- A **confusion matrix per image** (`truth x predicted` pixel counts at the evaluation size),
  pixels labelled IGNORE (COCO crowd regions) left out. Summing them gives the split's matrix,
  whatever the batch size.
- **Dataset-level metrics** from the summed matrix: IoU per class; `val_miou`, the mean IoU over
  the *foreground* classes (background is reported on its own, never in the mean: a model that
  predicts only background scores 0, not 1/n); `val_fscore`, the mean pixel F-score over the
  foreground classes. A class absent from both truth and prediction has no IoU (NaN) and is
  left out of the means.
- A **paired bootstrap** of the difference of two models' `val_miou` on the same images:
  images are resampled with replacement (seeded), both models' matrices summed over each
  resample, the difference taken; the interval is its percentiles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE = 255  # mask value of pixels that count in neither training nor evaluation
RESAMPLES = 2000
PRIMARY = "val_miou"


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


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class from a (C, C) matrix, or (..., C, C) stacked; NaN where a class is absent from both."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    union = confusion.sum(-2) + confusion.sum(-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def per_class_fscore(confusion: np.ndarray) -> np.ndarray:
    tp = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    denominator = confusion.sum(-2) + confusion.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def foreground_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the foreground classes (index 1..), NaNs left out; NaN when none is defined."""
    fg = values[..., 1:]
    defined = ~np.isnan(fg)
    count = defined.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(defined, fg, 0.0).sum(-1) / count, np.nan)


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


@dataclass(frozen=True)
class Interval:
    """`delta` (a - b) of `metric` on the same examples (images, rows), and its bootstrap interval."""

    delta: float
    low: float
    high: float
    confidence: float
    resamples: int
    images: int
    metric: str = "val_miou"

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired_bootstrap_mean(
    a: np.ndarray, b: np.ndarray, metric: str, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Interval of mean(a) - mean(b) for a metric that is the mean of per-example values (accuracy: 0/1 per
    row; a loss: per row), a and b scored on the same examples in the same order."""
    if a.shape != b.shape or a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"paired bootstrap needs two (n,) arrays of the same examples: {a.shape} vs {b.shape}")
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    diff = (a - b).astype(np.float64)
    deltas = diff[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return Interval(float(diff.mean()), float(low), float(high), confidence, resamples, n, metric)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Interval of val_miou(a) - val_miou(b), a and b being (n, C, C) matrices of the same n images."""
    if a.shape != b.shape or a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"paired bootstrap needs two (n, C, C) arrays of the same images: {a.shape} vs {b.shape}")
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n), dtype=np.int64)
    np.add.at(weights, (np.arange(resamples)[:, None], picks), 1)  # how often each image is drawn
    flat_a, flat_b = a.reshape(n, -1), b.reshape(n, -1)
    c = a.shape[1]
    sums_a = (weights @ flat_a).reshape(resamples, c, c)
    sums_b = (weights @ flat_b).reshape(resamples, c, c)
    deltas = foreground_mean(per_class_iou(sums_a)) - foreground_mean(per_class_iou(sums_b))
    deltas = deltas[~np.isnan(deltas)]
    point = float(foreground_mean(per_class_iou(a.sum(0))) - foreground_mean(per_class_iou(b.sum(0))))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail]) if deltas.size else (np.nan, np.nan)
    return Interval(point, float(low), float(high), confidence, resamples, n)
