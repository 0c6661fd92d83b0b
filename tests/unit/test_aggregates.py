"""#30: per-example evidence says how its metric aggregates; the bootstrap recomputes that aggregate.

The RMSE case is a regression as in MLflow's wine example (ElasticNet, `rmse` lower is better):
logging per-row squared errors as a plain mean gave the MSE difference as the point estimate,
outside its own interval. Each aggregate here is checked against a hand-computed value and an
independent bootstrap written the plain way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowops.evaluation import (
    RESAMPLES,
    Evidence,
    agrees,
    evidence_in,
    paired_bootstrap_of,
)
from flowops.segmentation.evaluation import paired_bootstrap


def rows(n: int) -> tuple[str, ...]:
    return tuple(f"row{i}" for i in range(n))


def test_rmse_of_two_rows_has_the_hand_computed_interval():
    """Squared errors [1, 9] against [0, 0]: a resample of two rows is {1,1}, {1,9}, {9,1} or {9,9},
    so RMSE(a) - RMSE(b) is 1, sqrt(5), sqrt(5) or 3; the 95% interval is [1, 3] and the point
    estimate sqrt(5) lies inside it (the MSE difference, 5, would lie outside)."""
    a = Evidence("rmse", "rmse", np.array([1.0, 9.0]), rows(2))
    b = Evidence("rmse", "rmse", np.array([0.0, 0.0]), rows(2))
    got = paired_bootstrap_of(a, b, confidence=0.95)
    assert got.delta == pytest.approx(math.sqrt(5))
    assert (got.low, got.high) == (1.0, 3.0)
    assert (got.metric, got.aggregate, got.images, got.resamples) == ("rmse", "rmse", 2, RESAMPLES)
    assert got.low <= got.delta <= got.high


def wine_like(seed: int = 7, n: int = 400):
    """Two regressors' predictions of a quality score on the same rows (the second one is better)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(3, 9, size=n).astype(float)
    first = truth + rng.normal(0, 0.8, size=n)
    second = truth + rng.normal(0, 0.6, size=n)
    return truth, first, second


def test_rmse_interval_equals_an_independent_bootstrap_and_contains_its_point():
    truth, first, second = wine_like()
    sq_a, sq_b = (second - truth) ** 2, (first - truth) ** 2
    a, b = (Evidence("rmse", "rmse", sq, rows(len(truth))) for sq in (sq_a, sq_b))
    got = paired_bootstrap_of(a, b, confidence=0.95, seed=0)
    # the plain way: the same seeded draws, RMSE of each resample of each model, the difference
    picks = np.random.default_rng(0).integers(0, len(truth), size=(RESAMPLES, len(truth)))
    deltas = np.sqrt(sq_a[picks].mean(1)) - np.sqrt(sq_b[picks].mean(1))
    low, high = np.percentile(deltas, [2.5, 97.5])
    assert got.delta == pytest.approx(np.sqrt(sq_a.mean()) - np.sqrt(sq_b.mean()), abs=1e-12)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.low < got.delta < got.high < 0  # the second model is surely better (lower RMSE)
    assert Evidence("rmse", "rmse", sq_a, rows(len(truth))).value() == pytest.approx(np.sqrt(sq_a.mean()))


def test_a_ratio_metric_resamples_its_counts():
    """F1 = 2TP / (2TP + FP + FN) from per-row counts, not the mean of per-row F1s."""
    rng = np.random.default_rng(3)
    tp, fp, fn = (rng.integers(0, 2, size=300).astype(float) for _ in range(3))
    f1 = Evidence("val_f1", "ratio", np.stack([2 * tp, 2 * tp + fp + fn], axis=1), rows(300))
    assert f1.value() == pytest.approx(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
    other = Evidence("val_f1", "ratio", np.stack([2 * fp, 2 * fp + tp + fn], axis=1), rows(300))
    got = paired_bootstrap_of(f1, other, seed=0)
    picks = np.random.default_rng(0).integers(0, 300, size=(RESAMPLES, 300))

    def ratio(e):
        return e.values[:, 0][picks].sum(1) / e.values[:, 1][picks].sum(1)

    low, high = np.percentile(ratio(f1) - ratio(other), [2.5, 97.5])
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.delta == pytest.approx(f1.value() - other.value())


def test_the_confusion_aggregate_is_the_segmentation_interval():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 50, size=(2, 30, 3, 3))
    old = paired_bootstrap(a, b)
    new = paired_bootstrap_of(*(Evidence("val_miou", "confusion", m, rows(30)) for m in (a, b)))
    assert (new.delta, new.low, new.high, new.metric) == (old.delta, old.low, old.high, "val_miou")


def npz(**arrays) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in arrays.items()}


def test_per_example_files_declare_their_aggregates():
    found = evidence_in(
        npz(
            ids=["a", "b", "c"],
            val_accuracy=[1, 0, 1],
            rmse=[1.0, 4.0, 0.25],
            **{
                "rmse.aggregate": "rmse",
                "f1.aggregate": "ratio",
                "f1.numerator": [2, 0, 2],
                "f1.denominator": [2, 1, 3],
            },
        ),
        "evaluation/per_example.npz",
    )
    assert {m: e.aggregate for m, e in found.items()} == {"val_accuracy": "mean", "rmse": "rmse", "f1": "ratio"}
    assert found["val_accuracy"].value() == pytest.approx(2 / 3)
    assert found["rmse"].value() == pytest.approx(math.sqrt(5.25 / 3))
    assert found["f1"].value() == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (npz(val_accuracy=[1, 0]), "evaluation/per_example.npz: no `ids` array naming the examples"),
        (npz(ids=["a", "a"], m=[1, 0]), "evaluation/per_example.npz: ids: 1 repeated; each example is named once"),
        (npz(ids=["a", "b"], m=[1, 0, 1]), "evaluation/per_example.npz: m: expected 2 numbers (one per id), got int64 (3,)"),
        (npz(ids=["a", "b"], m=[1.0, np.nan]), "evaluation/per_example.npz: m: 1 values are not finite"),
        (npz(ids=["a"], m=[1.0], **{"m.aggregate": "median"}),
         "evaluation/per_example.npz: m.aggregate: 'median' is not one of mean, rmse, ratio, confusion"),
        (npz(ids=["a"], **{"m.aggregate": "ratio", "m.numerator": [1]}),
         "evaluation/per_example.npz: m: a ratio needs m.numerator and m.denominator"),
        (npz(ids=["a"], m=[-1.0], **{"m.aggregate": "rmse"}),
         "evaluation/per_example.npz: m: rmse evidence is squared errors, and one is below 0"),
        (npz(ids=["a"], m=[[1, 2]], **{"m.aggregate": "confusion"}),
         "evaluation/per_example.npz: m: expected (1, C, C) confusion matrices, got (1, 2)"),
    ],
)  # fmt: skip
def test_malformed_evidence_is_refused_naming_the_key_and_rule(arrays, message):
    with pytest.raises(ValueError) as caught:
        evidence_in(arrays, "evaluation/per_example.npz")
    assert str(caught.value) == message


def test_the_logged_number_must_be_the_evidences_up_to_rounding():
    assert agrees(0.8123456, 0.81234561)  # float32 arrays, another summation order
    assert not agrees(0.0203, math.sqrt(0.0203))  # an MSE logged as RMSE
    assert not agrees(0.80, 0.81)
