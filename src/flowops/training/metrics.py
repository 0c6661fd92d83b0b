"""Segmentation metrics computed with numpy over whole splits (no TensorFlow)."""

from __future__ import annotations

import numpy as np


def per_class_iou(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """IoU of each class over all pixels (NaN where a class is absent from both)."""
    index = truth.astype(np.int64).ravel() * n_classes + predicted.astype(np.int64).ravel()
    confusion = np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)
