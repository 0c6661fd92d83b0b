"""Integration tier: real MLflow stores, real MLproject runs, tiny CPU trainings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO
from .services import mlflow_server, postgres_db, sftp  # noqa: F401 - fixtures for every integration test

BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Commands run in-process (CliRunner) set MLFLOW_* variables for themselves: none leaks into the next test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store (artifacts beside it) and cache, for this process and its children."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FLOWOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # `mlflow run` finds this python
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # mlflow.set_experiment leaves it behind
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    # Create the schema now: a test that starts a trainer and polls the store at once would
    # otherwise race two processes creating the same SQLite tables (a real server has them).
    MlflowClient(uri).search_experiments()
    return uri


def experiment_id(name: str) -> str:
    """Get or create an experiment without mlflow.set_experiment's process-wide side effects."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def tiny_spec(root: Path, **changes) -> dict:
    spec = {
        "name": "tiny",
        "categories": ["person", "car", "dog"],
        "image_size": 32,
        "epochs": 2,
        "batch_size": 4,
        "max_batches_per_epoch": 3,
        "experiment_name": "integration",
        "dataset": {"root": str(root)},
    }
    return {**spec, **changes}


def write_experiment(folder: Path, spec: dict, name: str = "tiny.yaml") -> Path:
    path = folder / "experiments" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# yaml-language-server: $schema=schema.json\n" + yaml.safe_dump(spec, sort_keys=False))
    return path


def flowops(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it."""
    return subprocess.run([str(BIN / "flowops"), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
