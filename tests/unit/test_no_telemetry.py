"""#32.24: no flowops process posts MLflow's usage telemetry (no network at run time but the tracking
server and configured mirrors), and its thread's race on _MLFLOW_TELEMETRY_SESSION_ID cannot fail a
training. MLflow turns telemetry off by itself under CI or pytest, so the check runs in a clean
environment, and first shows that MLflow alone would send it there."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "from mlflow.telemetry.utils import is_telemetry_disabled; print(is_telemetry_disabled())"


def clean_env() -> dict[str, str]:
    """A workstation's environment: none of the CI or test markers MLflow looks for."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


def probe(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_mlflow_alone_would_send_telemetry_here():
    assert probe(PROBE) == "False"


def test_every_flowops_process_turns_mlflow_telemetry_off():
    assert probe(f"import flowops.cli.main; {PROBE}") == "True"
    # and the processes it starts (mlflow run, the server, workers) inherit it
    assert probe("import flowops.cli.main, os; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])") == "true"
