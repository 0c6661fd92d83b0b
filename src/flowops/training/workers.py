"""Several training processes on one machine, as `flowops train --workers N` starts them.

The entry point, given FLOWOPS_TRAIN_WORKERS=N, does not train: it holds the run, starts N worker
processes of itself on loopback ports, each with its own TF_CONFIG, and waits. Worker 0 (the
chief) trains into the run, evaluates, logs the model and ends the run; the others train and
leave, without any MLflow access. When one fails the others are stopped, and the run ends
FAILED with the reason if the chief could not end it itself. On a cluster the same worker
processes are pods (flowops.training.kubernetes), and TF_CONFIG comes from the pod's index.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from flowops.spec.experiment import ExperimentSpec
from flowops.training import distribute

WORKERS_ENV = "FLOWOPS_TRAIN_WORKERS"  # not FLOWOPS_WORKERS: that sets the tracking server's workers
STOP_GRACE_S = 30  # a stopped worker's time to end its part before it is killed


def worker_main(spec: ExperimentSpec, place: distribute.Cluster) -> int:
    """A worker other than the chief: the same data and steps, no MLflow."""
    from flowops.data.cache import load_split
    from flowops.data.coco import open_split
    from flowops.training.fit import fit

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cached = {
            name: load_split(open_split(spec, name), spec.categories, spec.image_size) for name in ("train", "val")
        }
        fit(spec, cached, log=False)
    except BaseException as exc:
        from flowops.training.run import describe

        print(f"flowops.train: worker {place.index}: {describe(exc)}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def workers_main(spec: ExperimentSpec, argv: list[str], workers: int) -> int:
    """Start `workers` training processes here and wait for them; the run ends FAILED if one fails."""
    from mlflow.tracking import MlflowClient

    from flowops import tracking
    from flowops.tracking import FAILURE_TAG

    uri = tracking.use()
    client = MlflowClient()
    run_id = os.environ.get("MLFLOW_RUN_ID")  # `mlflow run` made it; else make it (not as the active run:
    if not run_id:  # this process must not end it when it exits)
        experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
        run_id = client.create_run(experiment_id, run_name=spec.name).info.run_id
    hosts = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    procs = []
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    for index in range(workers):
        env = {k: v for k, v in os.environ.items() if k not in (WORKERS_ENV, "MLFLOW_RUN_ID")}
        env["TF_CONFIG"] = distribute.tf_config(hosts, index)
        if index == 0:
            env["MLFLOW_RUN_ID"] = run_id  # the chief trains into the run
        procs.append(subprocess.Popen([sys.executable, "-m", "flowops.train", *argv], env=env))
    print(f"flowops.train: {workers} workers on {', '.join(hosts)}; run {run_id}", file=sys.stderr)
    first: tuple[int | None, str] | None = None  # (worker index, or None for a signal; reason): what failed first
    while any(p.poll() is None for p in procs):
        first = first or next(
            (
                (i, f"worker {i} exited with code {p.returncode}")
                for i, p in enumerate(procs)
                if p.poll() not in (None, 0)
            ),
            None,
        )
        if stopping and first is None:
            first = (None, f"interrupted (signal {stopping[0]})")
        if first:
            _stop(procs)
            break
        time.sleep(0.2)
    codes = [p.wait() for p in procs]
    first = first or next(((i, f"worker {i} exited with code {c}") for i, c in enumerate(codes) if c), None)
    if first is None:
        return 0
    culprit, reason = first
    run = client.get_run(run_id)
    if run.info.status in ("RUNNING", "SCHEDULED"):  # the chief could not end it itself
        client.set_terminated(run_id, "FAILED")
        client.set_tag(run_id, FAILURE_TAG, reason)
    elif culprit != 0 and run.info.status == "FAILED":  # the chief ended it when stopped: the cause is elsewhere
        client.set_tag(run_id, FAILURE_TAG, reason)
    print(f"flowops.train: {reason}", file=sys.stderr)
    return 130 if culprit is None else 1


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every worker still running (the chief then ends the run FAILED), SIGKILL after a grace."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
