"""The report's figures: learning curves against the holder, per-class bars, a prediction grid.

Drawn from what runs logged (metric histories, `samples/samples.npz`): no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flowops import plots
from flowops.spec.policy import PER_CLASS_PREFIX, RegistryPolicy

HISTORY_KEYS = ("val_iou", "val_loss", "iou", "loss")


def per_class(run) -> dict[str, float]:
    """class -> validation IoU of a run (its `val_iou.<class>` metrics)."""
    return {k[len(PER_CLASS_PREFIX) :]: v for k, v in run.data.metrics.items() if k.startswith(PER_CLASS_PREFIX)}


def section(client: Any, candidate: Any, production: Any, out: Path, policy: RegistryPolicy) -> str:
    """The `### Plots` section; `candidate` and `production` have `.label` and `.run`."""
    models = [candidate] + ([production] if production else [])
    histories = {
        m.label: {k: [p.value for p in client.get_metric_history(m.run.info.run_id, k)] for k in HISTORY_KEYS}
        for m in models
    }
    target = policy.targets.get("production") or next(iter(policy.targets.values()))
    limits = {t.metric: float(t.min if t.min is not None else t.max or 0.0) for t in target.thresholds}
    plots.learning_curves(histories, out / "learning_curves.png", metrics=("iou", "loss"), thresholds=limits)
    plots.per_class_bars({m.label: per_class(m.run) for m in models}, out / "per_class_iou.png")
    parts = ["### Plots", "", "![learning curves](learning_curves.png)", "", "![per-class IoU](per_class_iou.png)"]
    drawn, note = _prediction_grid(client, candidate, production, out / "predictions.png")
    if drawn:
        parts += [
            "",
            f"<details><summary>Predictions on fixed validation "
            f"images</summary>\n\n![predictions](predictions.png)\n\n{note}\n\n</details>",
        ]
    return "\n".join(parts)


def _samples(client, run) -> dict | None:
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="samples/samples.npz")
    except Exception:
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _prediction_grid(client, candidate: Any, production: Any, path: Path) -> tuple[bool, str]:
    """(drawn, note): image | truth | production | candidate for the run's fixed samples."""
    cand = _samples(client, candidate.run)
    if cand is None:
        return False, ""
    prod = _samples(client, production.run) if production else None
    same = (
        production is not None
        and prod is not None
        and list(prod["file_names"]) == list(cand["file_names"])
        and prod["truth"].shape == cand["truth"].shape
    )
    held = [production.label] if same and production else []
    titles = ["image", "truth", *held, "candidate"]
    rows = [
        [img, truth, *([prod["predicted"][i]] if same and prod else []), cand["predicted"][i]]
        for i, (img, truth) in enumerate(zip(cand["images"], cand["truth"], strict=False))
    ]
    names = [str(n) for n in cand["class_names"]]
    plots.mask_grid(rows, titles, len(names), names, path)
    if prod is not None and not same:
        return (
            True,
            "Production was evaluated on other images (other data, categories or size): its column is left out.",
        )
    return True, ""
