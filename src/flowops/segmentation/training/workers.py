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
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flowops.cancel import SIGNALS
from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.training import distribute
from flowops.segmentation.training.failure import describe
from flowops.training.environment import WORKERS_ENV

STOP_GRACE_S = 30  # a stopped worker's time to end its part before it is killed


def worker_main(spec: ExperimentSpec, place: distribute.Cluster) -> int:
    """A worker other than the chief: the same data and steps, no MLflow."""
    from flowops.segmentation.data.cache import load_split
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.training.fit import fit

    # Nothing of this process needs cleaning up, and a signal handled by Python waits until a
    # blocked collective returns (the chief stopped first: up to the stop grace, then SIGKILL):
    # SIGINT and SIGTERM end it at once, wherever it is.
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    try:
        cached = {
            name: load_split(open_split(spec, name), spec.categories, spec.image_size) for name in ("train", "val")
        }
        fit(spec, cached, log=False)
    except BaseException as exc:
        print(f"flowops.train: worker {place.index}: {describe(exc)}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def workers_main(spec: ExperimentSpec, argv: list[str], workers: int) -> int:
    """Start `workers` training processes here and wait for them; the run ends FAILED if one fails."""
    from mlflow.tracking import MlflowClient

    from flowops import tracking
    from flowops.tracking import FAILURE_TAG

    # Before anything exists to clean up: SIGINT and SIGTERM are recorded, and the loop below stops
    # the workers and ends the run (a KeyboardInterrupt here would skip both).
    stopping: list[int] = []
    for signum in SIGNALS:
        signal.signal(signum, lambda signum, frame: stopping.append(signum))
    uri = tracking.use()
    client = MlflowClient()
    run_id = os.environ.get("MLFLOW_RUN_ID")  # `mlflow run` made it; else make it (not as the active run:
    if not run_id:  # this process must not end it when it exits)
        experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
        run_id = client.create_run(experiment_id, run_name=spec.name).info.run_id
    hosts = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    procs = []
    for index in range(workers):
        if stopping:
            break
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
    if first is None and stopping:  # signalled before any worker started
        first = (None, f"interrupted (signal {stopping[0]})")
    if first is None:
        return 0
    culprit, reason = first
    run = client.get_run(run_id)
    if run.info.status in ("RUNNING", "SCHEDULED"):  # the chief could not end it itself
        reason += tracking.end_failed(client, run_id, reason)
    elif culprit != 0 and run.info.status == "FAILED":  # the chief ended it when stopped: the cause is elsewhere
        client.set_tag(run_id, FAILURE_TAG, reason)
    print(f"flowops.train: {reason}", file=sys.stderr)
    return 130 if culprit is None else 1


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the workers: the chief first, so that it ends the run FAILED between two steps (the
    others still answer its collectives; stopped first, they left it blocked in one until killed
    at the grace's end), then the others, which end at once; SIGKILL whatever is left after the grace."""
    chief, others = procs[0], procs[1:]
    if chief.poll() is None:
        chief.send_signal(signal.SIGTERM)
        try:
            chief.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"flowops.train: worker 0 did not stop within {STOP_GRACE_S} s: killed", file=sys.stderr)
            chief.kill()
            chief.wait()
    for p in others:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for index, p in enumerate(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"flowops.train: worker {index} did not stop within {STOP_GRACE_S} s: killed", file=sys.stderr)
            p.kill()
            p.wait()


PORTS_FROM = 10000  # the workers' ports are drawn from here to the kernel's ephemeral range


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports, free now, that nothing else is handed until the workers bind them.

    Each worker binds its port seconds later (after importing TensorFlow), and a port must be let
    go for it to bind. A port the kernel numbered (bind to port 0) is from the ephemeral range,
    which the kernel hands to every outgoing connection and bind(0) in the meantime: the worker
    then found it taken. These are drawn at random from below that range, where ports are only
    ever taken by name."""
    low = _ephemeral_low()
    if low - PORTS_FROM < 100 * n:  # a machine whose ephemeral range starts low: the kernel's numbers
        return _kernel_ports(n)
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(50 * n):
        if len(ports) == n:
            break
        port = rng.randrange(PORTS_FROM, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken
                continue
        if port not in ports:
            ports.append(port)
    return ports if len(ports) == n else _kernel_ports(n)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere only a starting point


def _kernel_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
