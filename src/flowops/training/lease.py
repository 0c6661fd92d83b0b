"""Who trains a run, and a beat while it trains: a run whose training died ends FAILED.

A training that cannot end its own run leaves it RUNNING: a process killed with -9 (a runner
lost, the out-of-memory killer), or a tracking server down for longer than training waits (it
cannot be told). `flowops train` names the process on the run it creates and, on a tracking
server, refreshes a beat tag while the MLproject trains; the next `flowops train` in the same
MLflow experiment ends FAILED, with the reason tagged, every RUNNING run whose trainer is known
gone: a process of this machine that no longer runs, or a beat older than the lease the run
recorded ("this machine": the same kernel boot and pid namespace, not only the same host name).
Runs without these tags (made by `mlflow run` alone, by a chief pod on Kubernetes)
are never touched.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.processes import running
from flowops.tracking import BEAT_TAG, BEAT_THREAD, LEASE_TAG
from flowops.tracking import TRAINER_HOST_TAG as HOST_TAG
from flowops.tracking import TRAINER_MACHINE_TAG as MACHINE_TAG
from flowops.tracking import TRAINER_PID_TAG as PID_TAG

LEASE_ENV = "FLOWOPS_RUN_LEASE_S"
DEFAULT_LEASE_S = 600.0


def lease_s() -> float:
    """The lease from FLOWOPS_RUN_LEASE_S (seconds), checked."""
    value = os.environ.get(LEASE_ENV, "").strip()
    if not value:
        return DEFAULT_LEASE_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise FlowopsError(f"{LEASE_ENV}={value!r}: must be a number of seconds from 1 to 604800")
    return seconds


def claim(remote: bool) -> dict[str, str]:
    """The tags that say which process trains a new run (with a first beat on a tracking server;
    an embedded store is one machine's, where the process itself is the proof)."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), MACHINE_TAG: machine()}
    if remote:
        tags |= {BEAT_TAG: f"{time.time():.0f}", LEASE_TAG: f"{lease_s():g}"}
    return tags


def machine() -> str:
    """This kernel's boot and this process's pid namespace: where a pid names this process ('' where
    either cannot be read, and then no pid is ever judged by it)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{namespace}"


class Beat:
    """Refresh the run's beat every quarter lease while the training runs: a daemon thread whose
    failed beats are let go, unsaid (the training's own requests say a server that is down; the
    lease says the rest)."""

    def __init__(self, client: Any, run_id: str, remote: bool) -> None:
        self._client, self._run_id = client, run_id
        self._every = lease_s() / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=BEAT_THREAD, daemon=True) if remote else None

    def __enter__(self) -> Beat:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # a beat in flight (retrying a server that is down) is not waited for

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._client.set_tag(self._run_id, BEAT_TAG, f"{time.time():.0f}")
            except Exception:  # the server is down or slow: the lease decides
                continue


def abandoned(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why a RUNNING run's trainer is known gone, or None (alive, or not ours to judge)."""
    pid, here = tags.get(PID_TAG, ""), machine()
    if not (pid.isascii() and pid.isdigit()):
        return None
    if here and tags.get(MACHINE_TAG) == here and not running(int(pid)):
        return f"its training stopped: process {pid} on {socket.gethostname()} no longer runs"
    try:
        beat, lease = float(tags[BEAT_TAG]), float(tags[LEASE_TAG])
    except (KeyError, ValueError):
        return None
    silent = (time.time() if now is None else now) - beat
    if silent > lease:
        return (
            f"its training stopped answering: no beat for {silent:.0f} s (lease {lease:g} s); the trainer "
            "was stopped or could not reach the tracking server"
        )
    return None


def abandoned_runs(client: Any, experiment_id: str) -> list[tuple[Any, str]]:
    """The experiment's RUNNING runs whose trainer is known gone, each with why."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    return [(run, why) for run in runs if (why := abandoned(run.data.tags)) is not None]
