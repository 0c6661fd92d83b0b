"""The report plug-in of the segmentation template: predictions on fixed validation images.

Registered as the entry point `flowops.report: segmentation`; drawn from the arrays each training
run logs (`samples/samples.npz`), so it needs no TensorFlow. A run that logged none gets nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flowops import plots


def prediction_grid(client: Any, candidate: Any, production: Any, out: Path) -> str:
    """The report's collapsible section: image | truth | production | candidate; "" without samples."""
    drawn, note = _prediction_grid(client, candidate, production, out / "predictions.png")
    if not drawn:
        return ""
    return (
        f"<details><summary>Predictions on fixed validation "
        f"images</summary>\n\n![predictions](predictions.png)\n\n{note}\n\n</details>"
    )


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
