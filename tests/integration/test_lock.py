"""The registry lock between promotes (#32.1, #32.4): real processes on one real store.

The time a lock entry takes to be judged dead is scaled down with FLOWOPS_LOCK_STALE_S (60 s in
use) so a holder can hold it for four times that, and be paused for longer, within seconds.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

STALE_S = 6.0  # the fence at 4.5 s: a heartbeat every 0.5 s may stall a while on a loaded runner
MODEL = "lock-model"

PROMOTE = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient
from flowops.errors import FlowopsError
from flowops.registry.store import Registry

name, hold_s, log, gate = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
registry = Registry(MlflowClient(), "lock-model")
def say(what):
    with log.open("a") as fh:
        fh.write(f"{what} {name} {time.time()}\\n")
say("waiting")
try:
    with registry.exclusive():
        say("enter")
        end = time.monotonic() + hold_s
        while time.monotonic() < end or (gate.name != "-" and not gate.exists()):
            time.sleep(0.05)
        registry.client.set_registered_model_tag("lock-model", "moved-by", name)  # a write under the lock
        say("exit")
except FlowopsError as exc:
    say("refused")
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def start(name: str, hold_s: float, log: Path, gate: str = "-") -> subprocess.Popen:
    env = {**os.environ, "FLOWOPS_LOCK_STALE_S": str(STALE_S)}
    return subprocess.Popen(
        [sys.executable, "-c", PROMOTE, name, str(hold_s), str(log), gate],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(log: Path) -> list[tuple[str, str, float]]:
    return [(w, n, float(t)) for w, n, t in (line.split() for line in log.read_text().splitlines())]


def wait_for(log: Path, what: str, name: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and any(e[:2] == (what, name) for e in events(log)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never said {what!r}: {log.read_text() if log.exists() else 'nothing'}")


@pytest.fixture
def model(store):
    MlflowClient().create_registered_model(MODEL)
    return MODEL


def test_waiters_behind_a_long_holder_keep_their_places_and_never_hold_it_together(model, tmp_path):
    """#32.1: a holder keeps the lock for 2.5 times the stale limit; two promotes wait behind it.
    They used to judge each other's unrefreshed entries dead, delete them and then run together."""
    log = tmp_path / "log"
    holder = start("holder", 2.5 * STALE_S, log)
    wait_for(log, "enter", "holder")
    waiters = [start(name, 0.5, log) for name in ("second", "third")]
    for proc in [holder, *waiters]:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    inside = {}
    for what, name, at in events(log):
        if what in ("enter", "exit"):
            inside.setdefault(name, []).append(at)
    spans = sorted(inside.values())
    assert len(spans) == 3 and all(len(s) == 2 for s in spans), spans
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans  # one at a time


def test_a_paused_holder_that_resumes_after_another_took_over_moves_nothing(model, tmp_path):
    """#32.4: a holder stopped (SIGSTOP) past the stale limit is judged dead; the next promote takes the
    lock. When the paused one resumes, its write is refused: it lost its place, and says so."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    paused = start("paused", 0.0, log, str(gate))  # holds until the gate file appears
    wait_for(log, "enter", "paused")
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        taker = start("taker", 0.5, log)
        assert taker.wait(timeout=120) == 0, taker.stderr.read() if taker.stderr else ""
    finally:
        gate.write_text("go")
        os.kill(paused.pid, signal.SIGCONT)
    assert paused.wait(timeout=60) == 1
    said = paused.stderr.read() if paused.stderr else ""
    assert "this promote lost its place in the registry lock" in said and "it moves nothing more" in said, said
    assert [e[:2] for e in events(log) if e[0] in ("enter", "exit", "refused")] == [
        ("enter", "paused"),
        ("enter", "taker"),
        ("exit", "taker"),
        ("refused", "paused"),
    ]
    assert MlflowClient().get_registered_model(MODEL).tags["moved-by"] == "taker"
    assert not [k for k in MlflowClient().get_registered_model(MODEL).tags if k.startswith("flowops.intent.")]
