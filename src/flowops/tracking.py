"""Where runs go: MLFLOW_TRACKING_URI / --tracking-uri, or the embedded default.

The embedded default is a SQLite store and an artifact folder in the working directory
(`mlruns.db`, `mlartifacts/`, both git-ignored), so one person needs no server.
"""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDED_DB = "mlruns.db"
EMBEDDED_ARTIFACTS = "mlartifacts"
FAILURE_TAG = "flowops.failure"  # why a training run ended FAILED, one line


def resolve_uri(explicit: str | None = None) -> str:
    """The tracking URI to use, made absolute for the embedded default."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(EMBEDDED_DB).resolve()}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:")


def use(explicit: str | None = None) -> str:
    """Point MLflow (and any child process) at the resolved URI; returns it."""
    import logging

    import mlflow

    # Creating or upgrading a SQLite store logs at INFO; users see one line per error, not that.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = resolve_uri(explicit)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str, uri: str) -> str:
    """The id of MLflow experiment `name`, created if missing (artifacts beside the database when embedded)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri))


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, the `mlartifacts/` folder beside the database file; else the server decides."""
    if not is_embedded(uri):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.resolve().parent / EMBEDDED_ARTIFACTS).as_uri()


def ui_hint(uri: str, run) -> str:
    """How a person opens this run: a link for a server, the `mlflow ui` command otherwise."""
    exp, run_id = run.info.experiment_id, run.info.run_id
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}   # then open experiment {exp}, run {run_id}"
