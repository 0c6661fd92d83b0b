"""How sure a difference between two models is, for any metric with per-example evidence.

numpy only (no TensorFlow): a training writes per-example evidence, and the report and
`flowops promote` recompute the intervals from it (docs/comparison.md).

- **Aggregates**: how a metric is made from per-example values (mean, rmse, ratio, or the mean
  IoU over classes 1.. of summed confusion matrices); `evidence_in` reads them from an
  `evaluation/per_example.npz`, refusing what it cannot check.
- A **paired bootstrap** of the difference of two models' metric on the same examples: examples
  are resampled with replacement (seeded), the metric recomputed for both models on each
  resample, the difference taken; the interval is its percentiles.
- IoU and F-score per class and their mean over the classes 1.. (class 0 is reported on its own,
  never in the mean; a class absent from truth and prediction has no IoU and is left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


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


@dataclass(frozen=True)
class Interval:
    """`delta` (a - b) of `metric` on the same examples (images, rows), and its bootstrap interval."""

    delta: float
    low: float
    high: float
    confidence: float
    resamples: int
    images: int
    metric: str
    aggregate: str = "confusion"

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


# How a metric is made from per-example values; the bootstrap recomputes exactly that on each resample.
AGGREGATES: dict[str, str] = {
    "mean": "the mean of one value per example (accuracy: 0 or 1 per row; a loss per row)",
    "rmse": "the square root of the mean of per-example squared errors",
    "ratio": "sum of numerators / sum of denominators (precision, recall, F1 from per-example counts)",
    "confusion": "mean IoU over the classes 1.. of the summed per-example confusion matrices",
}
DECLARATIONS = (".aggregate", ".numerator", ".denominator")  # keys that describe a metric, not one


@dataclass(frozen=True)
class Evidence:
    """One metric's per-example evidence: how it aggregates, and the arrays it aggregates.

    `values`: (n,) for mean and rmse (rmse: squared errors), (n, 2) numerator and denominator for
    ratio, (n, C, C) pixel or row counts for confusion. `ids` name the examples, in order."""

    metric: str
    aggregate: str
    values: np.ndarray
    ids: tuple[str, ...]

    def value(self) -> float:
        """The metric these examples make (what the run must have logged)."""
        return float(_aggregate(self.aggregate, np.ones((1, len(self.ids))), self.values)[0])


def _aggregate(kind: str, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The metric for each row of `weights` (R, n): how often each example is counted."""
    n = values.shape[0]
    sums = weights @ values.reshape(n, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "mean":
            return sums[:, 0] / weights.sum(1)
        if kind == "rmse":
            return np.sqrt(sums[:, 0] / weights.sum(1))
        if kind == "ratio":
            return np.where(sums[:, 1] != 0, sums[:, 0] / np.where(sums[:, 1] != 0, sums[:, 1], 1), np.nan)
    c = values.shape[1]
    return foreground_mean(per_class_iou(sums.reshape(-1, c, c)))


def evidence_in(arrays: dict[str, np.ndarray], where: str) -> dict[str, Evidence]:
    """Every metric's evidence in an `evaluation/per_example.npz`'s arrays; ValueError naming `where`,
    the key and the rule when they are malformed (a claim that cannot be checked is not evidence)."""
    if "ids" not in arrays:
        raise ValueError(f"{where}: no `ids` array naming the examples")
    ids = arrays["ids"]
    if ids.ndim != 1 or ids.shape[0] == 0:
        raise ValueError(f"{where}: ids: expected one id per example, got shape {ids.shape}")
    names = tuple(str(i) for i in ids)
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: ids: {len(names) - len(set(names))} repeated; each example is named once")
    n = len(names)
    metrics = sorted({k.rsplit(".", 1)[0] if k.endswith(DECLARATIONS) else k for k in arrays} - {"ids"})
    found = {}
    for metric in metrics:
        declared = arrays.get(f"{metric}.aggregate")
        kind = "mean" if declared is None else str(np.asarray(declared).reshape(-1)[0]) if declared.size == 1 else ""
        if kind not in AGGREGATES:
            raise ValueError(f"{where}: {metric}.aggregate: {kind!r} is not one of {', '.join(AGGREGATES)}")
        if kind == "ratio":
            parts = [arrays.get(f"{metric}.{p}") for p in ("numerator", "denominator")]
            if any(p is None for p in parts):
                raise ValueError(f"{where}: {metric}: a ratio needs {metric}.numerator and {metric}.denominator")
            values = np.stack([_numbers(p, (n,), where, metric) for p in parts], axis=1)  # type: ignore[arg-type]
            if (values[:, 1] < 0).any():
                raise ValueError(f"{where}: {metric}.denominator: a count below 0")
        elif metric not in arrays:
            raise ValueError(f"{where}: {metric}: declared {kind!r} but no {metric} array")
        elif kind == "confusion":
            values = arrays[metric]
            if values.ndim != 3 or values.shape[0] != n or values.shape[1] != values.shape[2]:
                raise ValueError(f"{where}: {metric}: expected ({n}, C, C) confusion matrices, got {values.shape}")
            if values.dtype.kind not in "iu" or (values < 0).any():
                raise ValueError(f"{where}: {metric}: confusion matrices hold counts (integers >= 0)")
            values = values.astype(np.int64)
        else:
            values = _numbers(arrays[metric], (n,), where, metric)
            if kind == "rmse" and (values < 0).any():
                raise ValueError(f"{where}: {metric}: rmse evidence is squared errors, and one is below 0")
        found[metric] = Evidence(metric, kind, values, names)
    return found


def _numbers(array: np.ndarray, shape: tuple[int, ...], where: str, metric: str) -> np.ndarray:
    if array.shape != shape or array.dtype.kind not in "biuf":
        raise ValueError(
            f"{where}: {metric}: expected {shape[0]} numbers (one per id), got {array.dtype} {array.shape}"
        )
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: {metric}: {int((~np.isfinite(values)).sum())} values are not finite")
    return values


def agrees(logged: float, recomputed: float) -> bool:
    """The logged metric is the evidence's number, up to rounding (float32 arrays, summation order)."""
    return math.isclose(logged, recomputed, rel_tol=1e-4, abs_tol=1e-6) or (
        math.isnan(logged) and math.isnan(recomputed)
    )


def paired_bootstrap_of(
    a: Evidence, b: Evidence, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Interval of metric(a) - metric(b), both the same metric of the same examples in the same order:
    examples are resampled with replacement (seeded), and each resample recomputes both metrics the
    way they aggregate (an RMSE from the resampled squared errors, a ratio from the resampled sums)."""
    if a.aggregate != b.aggregate or a.metric != b.metric:
        raise ValueError(f"paired bootstrap of {a.metric} ({a.aggregate}) against {b.metric} ({b.aggregate})")
    if a.ids != b.ids or a.values.shape != b.values.shape or not a.ids:
        raise ValueError(
            f"paired bootstrap needs the same examples in the same order: {a.values.shape} vs {b.values.shape}"
        )
    n = len(a.ids)
    rng = np.random.default_rng(seed)
    chunk = max(2, min(resamples, (4_000_000 // n) // 2 * 2))  # even: the same draws as one call
    exact = a.aggregate == "confusion"  # integer counts summed exactly
    deltas = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        picks = rng.integers(0, n, size=(r, n))
        rows = (np.arange(r)[:, None] * n + picks).ravel()
        weights = np.bincount(rows, minlength=r * n).reshape(r, n).astype(np.int64 if exact else np.float64)
        deltas.append(_aggregate(a.aggregate, weights, a.values) - _aggregate(b.aggregate, weights, b.values))
    spread = np.concatenate(deltas)
    spread = spread[~np.isnan(spread)]
    point = a.value() - b.value()
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(spread, [tail, 100 - tail]) if spread.size else (np.nan, np.nan)
    return Interval(float(point), float(low), float(high), confidence, resamples, n, a.metric, a.aggregate)


def paired_bootstrap_mean(
    a: np.ndarray, b: np.ndarray, metric: str, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Interval of mean(a) - mean(b) for a metric that is the mean of per-example values, a and b
    scored on the same examples in the same order."""
    if a.shape != b.shape or a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"paired bootstrap needs two (n,) arrays of the same examples: {a.shape} vs {b.shape}")
    ids = tuple(str(i) for i in range(a.shape[0]))
    return paired_bootstrap_of(
        Evidence(metric, "mean", a.astype(np.float64), ids),
        Evidence(metric, "mean", b.astype(np.float64), ids),
        confidence,
        resamples,
        seed,
    )
