"""`flowops bundle export`: a finished (or failed) run of a local store, written as a run bundle.

Runs in the untrusted PR stage, after `flowops train` into a store of its own: no credential
is needed to write a bundle, and nothing in it is trusted later.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from flowops.bundle.form import FOLDERS, RECORD, Bundle, FileEntry, LoggedModelRecord, Metric
from flowops.errors import FlowopsError
from flowops.hashing import sha256_file


def export_run(client: Any, run_id: str, out: Path) -> Bundle:
    """Write run `run_id` (params, metric histories, tags, artifacts, its model) to the folder `out`."""
    import mlflow

    from flowops.promotion.binding import logged_model

    run = client.get_run(run_id)
    if run.info.status not in ("FINISHED", "FAILED"):
        raise FlowopsError(f"run {run_id}: status {run.info.status}; only a FINISHED or FAILED run is bundled")
    if out.exists() and any(out.iterdir()):
        raise FlowopsError(f"{out}: not empty; a bundle is written to a new folder")
    experiment = client.get_experiment(run.info.experiment_id)
    metrics = [
        Metric(key=key, value=m.value, step=m.step, timestamp=m.timestamp)
        for key in sorted(run.data.metrics)
        for m in client.get_metric_history(run_id, key)
    ]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if client.list_artifacts(run_id):
            shutil.copytree(client.download_artifacts(run_id, "", tmp), out / FOLDERS[0])
        model = None
        found = logged_model(client, run)
        if not found.startswith("model:"):
            location = client.get_logged_model(found).artifact_location
            shutil.copytree(
                mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp + "/m"), out / "model"
            )
            model = LoggedModelRecord()
    files = {
        path.relative_to(out).as_posix(): FileEntry(size=path.stat().st_size, sha256=sha256_file(path))
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }
    bundle = Bundle(
        experiment_name=experiment.name,
        run_name=run.info.run_name or run_id,
        status=run.info.status,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        metrics=metrics,
        model=model,
        files=files,
    )
    (out / RECORD).write_text(bundle.model_dump_json(indent=1))
    return bundle
