"""The report plug-in of the segmentation template: predictions on fixed validation images.

Registered as the entry point `flowops.report: segmentation`; drawn from the arrays each training
run logs (`samples/samples.npz`), so it needs no TensorFlow. A run that logged none gets nothing;
samples that cannot be read (the tracking server refused or failed) are said, never dropped silently.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flowops import markdown
from flowops.segmentation import plots

SAMPLES = "samples/samples.npz"
TITLE = "<details><summary>Predictions on fixed validation images</summary>"


def prediction_grid(client: Any, candidate: Any, production: Any, out: Path) -> str:
    """The report's collapsible section: image | truth | production | candidate; "" without samples."""
    try:
        drawn, note = _prediction_grid(client, candidate, production, out / "predictions.png")
    except Unreadable as exc:
        return f"{TITLE}\n\nNot drawn: {markdown.text(exc)}\n\n</details>"
    if not drawn:
        return ""
    return f"{TITLE}\n\n![predictions](predictions.png)\n\n{note}\n\n</details>"


class Unreadable(Exception):
    """A run's samples exist (or may) but could not be read."""


def _samples(client, run) -> dict | None:
    """The run's sample arrays; None when it logged none; Unreadable when reading them failed."""
    run_id = run.info.run_id
    try:
        if SAMPLES not in {a.path for a in client.list_artifacts(run_id, "samples")}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, SAMPLES, tmp)
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise Unreadable(f"{SAMPLES} of run {run_id} could not be read ({type(exc).__name__}: {first})") from None


def _prediction_grid(client, candidate: Any, production: Any, path: Path) -> tuple[bool, str]:
    """(drawn, note): image | truth | production | candidate for the run's fixed samples."""
    cand = _samples(client, candidate.run)
    if cand is None:
        return False, ""
    unread = ""
    try:
        prod = _samples(client, production.run) if production else None
    except Unreadable as exc:  # the candidate's grid still helps; the missing column is said
        prod, unread = None, f"Production's column is left out: {markdown.text(exc)}."
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
    return True, unread
