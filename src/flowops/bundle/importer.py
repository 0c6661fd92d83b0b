"""`flowops bundle import`: a checked run bundle becomes a run on the team's tracking server.

Runs in the trusted stage with the trainer's credentials. Nothing is written until the whole
bundle has passed `check_bundle`; once the run exists, any failure ends it FAILED with the
reason, so no half-imported run stays RUNNING or looks finished.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from flowops import tracking
from flowops.bundle.check import Facts
from flowops.bundle.form import FOLDERS, KEPT_MLFLOW_TAGS, Bundle, is_claim
from flowops.cancel import Cancel
from flowops.hashing import MODEL_DIGEST_TAG
from flowops.promotion.binding import IMPORTED_AT_TAG, IMPORTED_TAG

BATCH = 500


def import_bundle(
    client: Any,
    uri: str,
    folder: Path,
    bundle: Bundle,
    facts: Facts,
    cancel: Cancel | None = None,
    started: list[str] | None = None,
    model_digest: str | None = None,
) -> str:
    """Create the run from `bundle` (already checked against `facts`); its id.

    `cancel` stops the import between steps (see `flowops.cancel`); the new run's id is appended
    to `started` as soon as it exists, so whoever cancels can end it FAILED. `model_digest` is the
    model folder's digest as imported (serving checks it).
    """
    cancel = cancel or Cancel()
    started = [] if started is None else started
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param

    from flowops.tracking import ensure_experiment

    experiment_id = ensure_experiment(bundle.experiment_name, uri)
    tags = {k: v for k, v in bundle.tags.items() if is_claim(k) or k in KEPT_MLFLOW_TAGS}
    tags.update(facts.tags())
    tags[IMPORTED_TAG] = f"run bundle of PR #{facts.pr_number} at {facts.head_sha}"
    tags[IMPORTED_AT_TAG] = str(int(time.time() * 1000))  # this stage's clock: the order of imports
    if model_digest:
        tags[MODEL_DIGEST_TAG] = model_digest  # of the model's files after its code was made the git blobs
    with cancel.lock:
        cancel.check()
        run = client.create_run(experiment_id, start_time=bundle.start_time, tags=tags, run_name=bundle.run_name)
        run_id = str(run.info.run_id)
        started.append(run_id)
    try:
        params = [Param(k, v) for k, v in bundle.params.items()]
        for i in range(0, len(params), 100):
            cancel.check()
            client.log_batch(run_id, params=params[i : i + 100])
        metrics = [Metric(m.key, m.value, m.timestamp, m.step) for m in bundle.metrics]
        for i in range(0, len(metrics), BATCH):
            cancel.check()
            client.log_batch(run_id, metrics=metrics[i : i + BATCH])
        if (folder / FOLDERS[0]).is_dir():
            cancel.check()
            client.log_artifacts(run_id, str(folder / FOLDERS[0]))
        if bundle.model is not None:
            cancel.check()
            model = client.create_logged_model(experiment_id, name=bundle.model.name, source_run_id=run_id)
            client.log_model_artifacts(model.model_id, str(folder / "model"))
            cancel.check()
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            client.log_outputs(run_id, [LoggedModelOutput(model.model_id, bundle.model.step)])
        with cancel.last_step():
            client.set_terminated(run_id, bundle.status, end_time=bundle.end_time)
    except BaseException as exc:
        if cancel.cancelled:  # whoever cancelled ends the run
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        with cancel.last_step():
            end_failed(client, run_id, f"import of the run bundle failed: {type(exc).__name__}: {first}")
        raise
    return run_id


def end_failed(client: Any, run_id: str, reason: str) -> None:
    """End an imported run FAILED: status first (it is what says RUNNING), then the reason
    (tracking.end_failed); what the tracking server did not record is said on stderr."""
    not_recorded = tracking.end_failed(client, run_id, reason)
    if not_recorded:
        print(f"flowops bundle import: {not_recorded.strip()}", file=sys.stderr)
