"""The segmentation template's evidence plug-in (entry point `segmentation` of `flowops.evidence`):
val_miou's per-image confusion matrices, read for the comparison and checked at a bundle's import."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from flowops.evaluation import Evidence, agrees
from flowops.plugins import EvidencePlugin
from flowops.segmentation.evaluation import PRIMARY, split_metrics

CONFUSION = "evaluation/confusion.npz"  # a run's per-image matrices; a holder it scored: evaluation/holder.ALIAS.npz
HOLDER_MATRICES = re.compile(r"^artifacts/evaluation/holder\.([^/]+?)\.npz$")


def read(metric: str, scored: str | None, arrays: Callable[[str], dict[str, np.ndarray] | None]) -> Evidence | None:
    """val_miou's per-image confusion matrices as the run logged them (of the holder it scored as
    alias `scored`), read with `arrays(artifact)`; None for any other metric or when it logged none."""
    if metric != PRIMARY:
        return None
    data = arrays(CONFUSION if scored is None else f"evaluation/holder.{scored}.npz")
    if data is None:
        return None
    ids = tuple(str(n) for n in data["file_names"])
    return Evidence(metric, "confusion", np.asarray(data["confusion"], dtype=np.int64), ids)


def check(
    folder: Path, files: Collection[str], values: dict[str, float], spec: Any, load: Callable[[Path], Any]
) -> str | None:
    """Why a bundle's per-image matrices (its own, and each holder's it scored) disagree with the
    metrics it logged, or with the classes the experiment trains (`spec`, from git); None when they agree."""
    expected_classes = getattr(spec, "class_names", None)
    confusion = "artifacts/" + CONFUSION
    class_names: list[str] | None = None
    if confusion in files:
        arrays = load(folder / confusion)
        if isinstance(arrays, str):
            return arrays
        if "confusion" not in arrays or "class_names" not in arrays:
            return f"{folder / confusion}: expected the arrays confusion and class_names"
        claimed = [str(c) for c in arrays["class_names"]]
        if expected_classes is not None and claimed != expected_classes:
            return f"{folder / confusion}: class_names: {claimed}, but the experiment trains {expected_classes}"
        class_names = claimed
        why = _agree_confusion(folder / confusion, arrays["confusion"], class_names, "", values)
        if why:
            return why
    for rel in sorted(files):
        holder = HOLDER_MATRICES.match(rel)
        if not holder or rel.endswith(".per_example.npz"):  # (the engine checks per-example evidence)
            continue
        arrays = load(folder / rel)
        if isinstance(arrays, str):
            return arrays
        if class_names is None:
            return f"{folder / rel}: a holder's matrices without the run's own evaluation/confusion.npz"
        prefix = f"holder.{holder.group(1)}."
        why = _agree_confusion(folder / rel, arrays.get("confusion"), class_names, prefix, values)
        if why:
            return why
    return None


def _agree_confusion(path: Path, matrices: Any, class_names: list[str], prefix: str, values: dict) -> str | None:
    c = len(class_names)
    if matrices is None or matrices.ndim != 3 or matrices.shape[1:] != (c, c) or matrices.dtype.kind not in "iu":
        shape = None if matrices is None else matrices.shape
        return f"{path}: confusion: expected (n, {c}, {c}) counts for {c} classes, got {shape}"
    made = split_metrics(np.asarray(matrices, dtype=np.int64), class_names)
    extra = sorted(k for k in values if k.startswith(prefix + "val_iou.") and k[len(prefix) :] not in made)
    if extra:
        return f"{path}: {extra[0]}: logged, but the matrices have no such class in truth or prediction"
    for metric, value in made.items():
        name = prefix + metric
        if name not in values:
            return f"{path}: {metric}: the matrices make {value:.6g}, the run logged no {name}"
        if not agrees(values[name], value):
            return (
                f"{path}: {metric}: the matrices make {value:.6g}, the run logged {name} {values[name]:.6g}: "
                "the logged number must be its evidence's"
            )
    return None


EVIDENCE = EvidencePlugin(read=read, check=check)
