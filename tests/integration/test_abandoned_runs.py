"""A training that cannot end its run (the tracking server down for longer than training waits, or
its processes killed with -9) says what it is waiting for, and the next `flowops train` in the same
MLflow experiment ends that run FAILED with the reason (#32 items 22 and 9): no run stays RUNNING.
A real `mlflow server` behind the fault proxy, a real MLflow Project, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import BIN, flowops
from .faultproxy import FaultProxy

# The project's training waits for the test's go (a file) with a deadline, then logs a metric.
MLPROJECT = """name: waits
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
    command: "python train.py {alpha}"
"""
TRAIN = """import os, sys, time, pathlib
import mlflow
folder = pathlib.Path(os.environ["GATE_DIR"])
(folder / "started").write_text(os.environ.get("MLFLOW_RUN_ID", ""))
deadline = time.monotonic() + 120
while not (folder / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("no go within 120 s")
    time.sleep(0.05)
mlflow.log_metric("loss", float(sys.argv[1]))
(folder / "logged").write_text("")
while not (folder / "end").exists():
    if time.monotonic() > deadline:
        sys.exit("no end within 120 s")
    time.sleep(0.05)
"""


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "experiments").mkdir(parents=True)
    (root / "MLproject").write_text(MLPROJECT)
    (root / "train.py").write_text(TRAIN)
    (root / "flowops.yaml").write_text("schema: mlproject\n")
    (root / "experiments" / "a.yaml").write_text("name: a\nalpha: 0.5\n")
    (root / "experiments" / "b.yaml").write_text("name: b\nalpha: 0.25\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*ident, "commit", "-q", "-m", "project"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    (tmp_path / "gate").mkdir()
    return root


def env_for(uri: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_RUN_ID"):
        env.pop(key, None)  # flowops' own training defaults, unless a test sets them
    return env | {"MLFLOW_TRACKING_URI": uri, "GATE_DIR": str(tmp_path / "gate"), **extra}


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"training ended before {path.name}: {err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path.name} within {seconds} s")
        time.sleep(0.05)


def runs_of(uri: str) -> dict[str, object]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("waits")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def test_item_22_a_server_down_mid_training_is_said_and_its_run_is_ended_by_the_next_train(server, project, tmp_path):
    with FaultProxy(server) as proxy:
        proc = subprocess.Popen(
            [str(BIN / "flowops"), "train", "experiments/a.yaml"],
            cwd=project,
            env=env_for(proxy.uri, tmp_path, FLOWOPS_RUN_LEASE_S="4", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(tmp_path / "gate" / "started", proc)
        proxy.faults = {"": "drop"}  # the server is down: every connection closes unanswered
        (tmp_path / "gate" / "go").write_text("")
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    # The project's own traceback is its business; flowops' lines follow it, without one.
    assert "Traceback" not in err.split("MlflowException: API request to")[-1], err[-3000:]
    retries = [line for line in err.splitlines() if line.startswith(f"flowops: {proxy.uri}: no connection; retrying")]
    # flowops train's training budget: six tries of each request, five retries said, counting down
    assert retries[:5] == [f"flowops: {proxy.uri}: no connection; retrying ({n} tries left)" for n in (4, 3, 2, 1, 0)]
    last = err.strip().splitlines()[-1]
    assert last.startswith("training a failed (run ") and last.endswith("may still show RUNNING"), last
    stuck = runs_of(server)["a"]
    assert stuck.info.status == "RUNNING"
    assert stuck.data.tags["flowops.lease_s"] == "4" and stuck.data.tags["flowops.trainer_host"]

    # The next training in the experiment (here, on another machine as far as the lease knows:
    # its process check is for this kernel boot and pid namespace, so make those differ) ends it
    # FAILED, saying why.
    MlflowClient(server).set_tag(stuck.info.run_id, "flowops.trainer_machine", "a-lost-runner's-boot/4026531836")
    # Its last beat was sent before the server went down; the lease runs from there.
    beat = float(stuck.data.tags["flowops.alive"])
    while time.time() < beat + 4 + 1:
        time.sleep(0.1)
    (tmp_path / "gate" / "end").write_text("")
    nxt = flowops("train", "experiments/b.yaml", cwd=project, env=env_for(server, tmp_path))
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    runs = runs_of(server)
    ended = runs["a"]
    assert ended.info.status == "FAILED" and runs["b"].info.status == "FINISHED"
    reason = ended.data.tags["flowops.failure"]
    assert reason.startswith("its training stopped answering: no beat for ") and reason.endswith(
        "(lease 4 s); the trainer was stopped or could not reach the tracking server"
    ), reason
    assert f"flowops train: ended run {ended.info.run_id} (a) FAILED: {reason}" in nxt.stderr


@pytest.mark.parametrize("step", ["started", "logged"])
def test_item_9_a_training_killed_with_minus_9_at_each_step_is_ended_by_the_next(server, project, tmp_path, step):
    """kill -9 of the whole process group (a lost runner, the out-of-memory killer) while the project
    trains, and after it logged: the run says RUNNING until the next flowops train here ends it."""
    proc = subprocess.Popen(
        [str(BIN / "flowops"), "train", "experiments/a.yaml"],
        cwd=project,
        env=env_for(server, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(tmp_path / "gate" / "started", proc)
    if step == "logged":
        (tmp_path / "gate" / "go").write_text("")
        wait_for(tmp_path / "gate" / "logged", proc)
        assert runs_of(server)["a"].data.metrics == {"loss": 0.5}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert runs_of(server)["a"].info.status == "RUNNING"
    (tmp_path / "gate" / "go").write_text("")
    (tmp_path / "gate" / "end").write_text("")
    nxt = flowops("train", "experiments/b.yaml", cwd=project, env=env_for(server, tmp_path))
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    ended = runs_of(server)["a"]
    assert ended.info.status == "FAILED"
    pid = ended.data.tags["flowops.trainer_pid"]
    assert (
        ended.data.tags["flowops.failure"]
        == f"its training stopped: process {pid} on {os.uname().nodename} no longer runs"
    )
