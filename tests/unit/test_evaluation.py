"""Dataset-level segmentation metrics and the paired bootstrap, checked against direct numpy."""

from __future__ import annotations

import numpy as np
import pytest

from flowops.evaluation import per_class_iou
from flowops.segmentation.evaluation import (
    IGNORE,
    confusion_per_image,
    eval_set_id,
    paired_bootstrap,
    split_metrics,
)

CLASSES = ["background", "person", "car", "dog"]


def direct_iou(truth: np.ndarray, predicted: np.ndarray, cls: int) -> float:
    """IoU of one class over all labelled pixels, the plain way."""
    labelled = truth != IGNORE
    t, p = (truth == cls) & labelled, (predicted == cls) & labelled
    union = (t | p).sum()
    return float((t & p).sum() / union) if union else float("nan")


def masks(seed: int, n: int = 12, size: int = 16, classes: int = 4):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, size=(n, size, size)).astype(np.uint8)
    truth[rng.random((n, size, size)) < 0.05] = IGNORE
    predicted = np.where(rng.random((n, size, size)) < 0.7, truth, rng.integers(0, classes, (n, size, size)))
    predicted = np.where(predicted == IGNORE, 0, predicted).astype(np.uint8)
    return truth, predicted


def test_per_class_iou_and_the_foreground_mean_match_a_direct_computation():
    truth, predicted = masks(1)
    metrics = split_metrics(confusion_per_image(truth, predicted, 4), CLASSES)
    direct = [direct_iou(truth, predicted, c) for c in range(4)]
    for c, name in enumerate(CLASSES):
        assert metrics[f"val_iou.{name}"] == pytest.approx(direct[c], abs=1e-12)
    assert metrics["val_miou"] == pytest.approx(np.mean(direct[1:]), abs=1e-12)  # background not in the mean


def test_batch_size_does_not_change_the_number():
    truth, predicted = masks(2, n=20)
    whole = split_metrics(confusion_per_image(truth, predicted, 4), CLASSES)
    for batch in (1, 3, 7):
        parts = [confusion_per_image(truth[i : i + batch], predicted[i : i + batch], 4) for i in range(0, 20, batch)]
        assert split_metrics(np.concatenate(parts), CLASSES) == whole


def test_a_mask_value_that_is_no_class_is_an_error_naming_the_image():
    """Hardening 3 item 26: a value in [C, 255) used to be counted in the next image's matrix
    (or to raise on the last image)."""
    truth, predicted = masks(3, n=3)
    truth[1, 0, 0] = 7  # 4 classes: 7 is neither a class nor IGNORE
    with pytest.raises(ValueError, match=r"^mask of val/b\.jpg: value 7 is neither a class \(0\.\.3\) nor 255"):
        confusion_per_image(truth, predicted, 4, ["val/a.jpg", "val/b.jpg", "val/c.jpg"])
    truth[1, 0, 0] = 1
    truth[2, 5, 5] = 4  # on the last image
    with pytest.raises(ValueError, match=r"^mask of image 2: value 4 "):
        confusion_per_image(truth, predicted, 4)
    truth[2, 5, 5] = IGNORE  # ignored pixels stay fine
    assert confusion_per_image(truth, predicted, 4).sum() == (truth != IGNORE).sum()


def test_absent_classes_ignored_pixels_and_empty_predictions():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # one person; no car, no dog anywhere
    truth[1, 3, :] = IGNORE  # a crowd row
    predicted = np.zeros_like(truth)  # background everywhere
    predicted[1, 3, :] = 2  # "car" predicted only on ignored pixels: not counted
    metrics = split_metrics(confusion_per_image(truth, predicted, 4), CLASSES)
    assert metrics["val_iou.person"] == 0.0
    assert "val_iou.car" not in metrics and "val_iou.dog" not in metrics  # absent from truth and prediction
    assert metrics["val_miou"] == 0.0  # predicting background only scores 0, not 1/n
    assert metrics["val_iou.background"] == pytest.approx(24 / 28)  # 24 background pixels, 28 predicted background
    assert confusion_per_image(truth, predicted, 4).sum() == 32 - 4


def test_identical_models_give_an_interval_around_zero():
    truth, predicted = masks(3, n=30)
    confusion = confusion_per_image(truth, predicted, 4)
    interval = paired_bootstrap(confusion, confusion, seed=1)
    assert interval.delta == 0.0 and interval.low == 0.0 and interval.high == 0.0 and interval.contains_zero()


def test_a_clearly_better_model_has_an_interval_above_zero_and_the_seed_fixes_it():
    truth, good = masks(4, n=40)
    rng = np.random.default_rng(9)
    worse = np.where(rng.random(truth.shape) < 0.5, good, rng.integers(0, 4, truth.shape)).astype(np.uint8)
    a, b = confusion_per_image(truth, good, 4), confusion_per_image(truth, worse, 4)
    interval = paired_bootstrap(a, b, seed=5)
    assert interval.low > 0.05 and interval.high > interval.low and not interval.contains_zero()
    assert paired_bootstrap(a, b, seed=5) == interval
    assert paired_bootstrap(a, b, seed=6) != interval
    assert interval.resamples == 2000 and interval.images == 40


def test_the_bootstrap_needs_the_same_images():
    truth, predicted = masks(5)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(confusion_per_image(truth, predicted, 4), confusion_per_image(truth[:5], predicted[:5], 4))


def test_the_eval_set_identity_changes_with_data_classes_and_size():
    base = eval_set_id("a" * 64, CLASSES, 128)
    assert base == eval_set_id("a" * 64, CLASSES, 128)
    assert len({base, eval_set_id("b" * 64, CLASSES, 128), eval_set_id("a" * 64, CLASSES[:3], 128),
                eval_set_id("a" * 64, CLASSES, 64)}) == 4  # fmt: skip


def test_per_class_iou_stacks():
    truth, predicted = masks(6)
    confusion = confusion_per_image(truth, predicted, 4)
    stacked = per_class_iou(confusion)
    assert stacked.shape == (12, 4)
    assert np.allclose(np.nan_to_num(stacked[3]), np.nan_to_num(per_class_iou(confusion[3])))


def test_the_paired_interval_of_a_mean_metric_is_about_the_difference_row_by_row():
    from flowops.evaluation import paired_bootstrap_mean

    a = np.array([1.0, 1, 1, 0, 1, 1, 1, 1, 0, 1] * 20)
    same = paired_bootstrap_mean(a, a.copy(), "val_accuracy")
    assert (same.delta, same.low, same.high, same.images, same.metric) == (0.0, 0.0, 0.0, 200, "val_accuracy")
    b = a.copy()
    b[:10] = 0.0  # b gets 10 of a's correct rows wrong, and nothing else changes
    got = paired_bootstrap_mean(a, b, "val_accuracy", confidence=0.9)
    assert got.delta == pytest.approx(8 / 200)  # 8 of those 10 rows were right in a
    assert 0 < got.low < got.delta < got.high  # paired: the rows both get right add no noise
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap_mean(a, b[:-1], "val_accuracy")
