"""The bundle's metrics against its own per-example evidence, before anything is imported.

A metric with evidence (`evaluation/per_example.npz`, the per-image `evaluation/confusion.npz`,
and the same files for each holder the PR scored) is a claim that the import checks: the
number the run logged must be the number its evidence makes (flowops.evaluation.agrees), or
the interval computed later from that evidence would be of another number than the one
reviewers read and the policy judges.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from flowops.bundle.form import Bundle

MAX_UNPACKED = 2 << 30  # bytes an evidence file may unpack to (np.savez_compressed inflates)
HOLDER_FILE = re.compile(r"^artifacts/evaluation/holder\.([^/]+?)\.(per_example\.)?npz$")


def logged(bundle: Bundle) -> dict[str, float]:
    """Each metric's value as MLflow shows it: the latest by step, then time."""
    latest: dict[str, tuple[int, int, float]] = {}
    for m in bundle.metrics:
        if m.key not in latest or (m.step, m.timestamp) >= latest[m.key][:2]:
            latest[m.key] = (m.step, m.timestamp, m.value)
    return {k: v[2] for k, v in latest.items()}


def check_evidence(folder: Path, bundle: Bundle, expected_classes: list[str] | None = None) -> str | None:
    """Why the bundle's metrics disagree with its evidence (one line), or None when they agree.
    `expected_classes`: the experiment's (from git), which the matrices' own list must be."""
    from flowops.evaluation import agrees, evidence_in

    values = logged(bundle)
    confusion = "artifacts/evaluation/confusion.npz"
    class_names: list[str] | None = None
    if confusion in bundle.files:
        arrays = _load(folder / confusion)
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
    for rel in sorted(bundle.files):
        holder = HOLDER_FILE.match(rel)
        if rel == "artifacts/evaluation/per_example.npz" or holder:
            prefix = f"holder.{holder.group(1)}." if holder else ""
            arrays = _load(folder / rel)
            if isinstance(arrays, str):
                return arrays
            if holder and not holder.group(2):  # a holder's per-image matrices, for the same classes
                if class_names is None:
                    return f"{folder / rel}: a holder's matrices without the run's own evaluation/confusion.npz"
                why = _agree_confusion(folder / rel, arrays.get("confusion"), class_names, prefix, values)
                if why:
                    return why
                continue
            try:
                found = evidence_in(arrays, str(folder / rel))
            except ValueError as exc:
                return str(exc)
            for metric, evidence in found.items():
                name = prefix + metric
                made = evidence.value()
                if name not in values:
                    return f"{folder / rel}: {metric}: evidence of a metric the run did not log ({name})"
                if not agrees(values[name], made):
                    return (
                        f"{folder / rel}: {metric}: the evidence makes {made:.6g} ({evidence.aggregate} of "
                        f"{len(evidence.ids)} examples), the run logged {name} {values[name]:.6g}: the logged "
                        "number must be its evidence's (docs/comparison.md)"
                    )
    return None


def _agree_confusion(path: Path, matrices: Any, class_names: list[str], prefix: str, values: dict) -> str | None:
    import numpy as np

    from flowops.evaluation import agrees
    from flowops.segmentation.evaluation import split_metrics

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


def _load(path: Path) -> dict[str, Any] | str:
    """The file's arrays (no pickles), or why it cannot be read as evidence."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as packed:
            if sum(i.file_size for i in packed.infolist()) > MAX_UNPACKED:
                return f"{path}: unpacks to more than {MAX_UNPACKED} bytes"
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        return f"{path}: not a numpy .npz of plain arrays ({type(exc).__name__}: {first})"
