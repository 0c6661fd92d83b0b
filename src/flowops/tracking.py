"""Where runs go: MLFLOW_TRACKING_URI / --tracking-uri, or the embedded default.

The embedded default is a SQLite store and an artifact folder in the working directory
(`mlruns.db`, `mlartifacts/`, both git-ignored), so one person needs no server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from flowops.redact import redact

EMBEDDED_DB = "mlruns.db"
EMBEDDED_ARTIFACTS = "mlartifacts"
FAILURE_TAG = "flowops.failure"  # why a training run ended FAILED, one line
# Which process trains a run, and its beat (training/lease.py): bookkeeping of the training, which
# a bundle may carry and the import never keeps.
TRAINER_HOST_TAG = "flowops.trainer_host"
TRAINER_PID_TAG = "flowops.trainer_pid"
# The kernel's boot and the pid namespace the process lives in: two containers may share a host
# name and number their processes alike, so a pid is only checked where both are this one's.
TRAINER_MACHINE_TAG = "flowops.trainer_machine"
BEAT_TAG = "flowops.alive"  # seconds since the epoch, the trainer's clock, at its last beat
LEASE_TAG = "flowops.lease_s"  # how long after its last beat the run counts as abandoned
TRAINER_TAGS = (TRAINER_HOST_TAG, TRAINER_PID_TAG, TRAINER_MACHINE_TAG, BEAT_TAG, LEASE_TAG)
BEAT_THREAD = "flowops-run-beat"


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

    import mlflow

    # Creating or upgrading a SQLite store logs at INFO; users see one line per error, not that.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = resolve_uri(explicit)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


# flowops' own commands give up on a tracking server that is down (refuses or cannot be reached)
# after ~2.4 s of waiting between tries, and on one that accepts but never answers after ~32 s
# (MLflow's defaults, 7 retries with backoff factor 2 and 120 s timeouts, make either a 4-minute
# hang). A try waits 10 s for an answer: a busy server (a shared CI runner, auth checks on every
# request) answers a registry write in seconds, and a 3 s bound failed promotes that would have
# succeeded. Each is only a default: the usual MLFLOW_HTTP_REQUEST_* variables override it.
BOUNDED_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",  # 3 tries in all
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # waits 0, then 2 s, between tries (MLflow reads an integer)
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds a try waits for an answer
}


# Training waits longer: a short outage of the server should not cost an hour of GPU time. Six
# tries, waiting 0, 4, 8, 16 and 32 s between them: about a minute of a server that is down (two
# of one that never answers) per request, said try by try, before the training stops; its run is
# then ended FAILED by the next `flowops train` (training/lease.py).
TRAINING_HTTP = BOUNDED_HTTP | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2"}


QUIET_THREADS = {BEAT_THREAD}  # background writes whose retries are not the user's business


class _SayRetrying(logging.Handler):
    """urllib3's retries as one plain line each: the user sees that flowops is retrying (when
    `answers`, also a retried error answer: training's waits are long enough to need saying)."""

    def __init__(self, answers: bool) -> None:
        super().__init__()
        self.answers = answers

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName in QUIET_THREADS:
            return
        message = record.getMessage()
        if message.startswith("Retry: ") and self.answers:  # urllib3's (debug) line for a retried answer (5xx, 429)
            reason, left = "an error answer", ""
        elif message.startswith("Retrying"):  # its warning for a connection that failed
            reason = "no answer" if "timed out" in message.lower() else "no connection"
            left = message.split("total=", 1)[1].split(",", 1)[0] if "total=" in message else "?"
            left = f" ({left} tries left)"
        else:
            return
        uri = redact(os.environ.get("MLFLOW_TRACKING_URI", "the tracking server"))
        print(f"flowops: {uri}: {reason}; retrying{left}", file=sys.stderr, flush=True)


def bounded_http(training: bool = False) -> None:
    """Bound how long flowops waits on the tracking server (longer when `training`), and say when it
    retries. Defaults only: MLFLOW_HTTP_REQUEST_* variables that are set win; a child process
    (the MLproject's) inherits them."""
    for name, value in (TRAINING_HTTP if training else BOUNDED_HTTP).items():
        os.environ.setdefault(name, value)
    pool = logging.getLogger("urllib3.connectionpool")
    said = next((h for h in pool.handlers if isinstance(h, _SayRetrying)), None)
    if said is None:
        said = _SayRetrying(answers=False)
        pool.addHandler(said)
        pool.propagate = False
    if training:
        said.answers = True
        pool.setLevel(logging.DEBUG)  # retried answers are logged at debug; the handler keeps only those


def end_failed(client, run_id: str, reason: str, ended: bool = False) -> str:
    """End a run FAILED, then tag why (FAILURE_TAG, one line): each on its own, so a tracking server
    that stops answering costs the tag, not the run's end. `ended`: the run was ended FAILED already
    (only the reason is tagged). Never raises: '' when both were recorded, else what was not, as a
    phrase for the line that says the failure."""
    if not ended:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception as exc:
            return f" (the tracking server did not answer, so run {run_id} may still show RUNNING: {_said(exc)})"
    try:
        client.set_tag(run_id, FAILURE_TAG, reason[:500])
    except Exception as exc:
        return f" (run {run_id} ended FAILED; its reason could not be tagged: {_said(exc)})"
    return ""


def _said(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}")[:300]


def ensure_experiment(name: str, uri: str) -> str:
    """The id of MLflow experiment `name`, created if missing (artifacts beside the database when embedded)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException as exc:  # another job (a matrix sibling) created it first: use theirs
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return again.experiment_id


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, the `mlartifacts/` folder beside the database file; else the server decides."""
    if not is_embedded(uri):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.resolve().parent / EMBEDDED_ARTIFACTS).as_uri()


PUBLIC_UI_ENV = "FLOWOPS_PUBLIC_UI_URL"  # the tracking UI as people outside the network may see it


def report_link(uri: str, run) -> str:
    """How a published report points at a run: never the tracking URI, unless its UI is declared public."""
    public = os.environ.get(PUBLIC_UI_ENV, "").strip()
    if public:
        return f"{public.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    if os.environ.get("GITHUB_ACTIONS") == "true" or uri.startswith(("http://", "https://")):
        return f"run {run.info.run_id} on the team's tracking server (set {PUBLIC_UI_ENV} to link it)"
    return ui_hint(uri, run)


def ui_hint(uri: str, run) -> str:
    """How a person opens this run: a link for a server, the `mlflow ui` command otherwise."""
    exp, run_id = run.info.experiment_id, run.info.run_id
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}   # then open experiment {exp}, run {run_id}"
