"""Integration tier: real MLflow stores, real MLproject runs, tiny CPU trainings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, sqlite_store
from ..parallel import built_once
from .services import mlflow_server, postgres_db, postgres_template, server, sftp  # noqa: F401 - fixtures for every integration test

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
def store(tmp_path, monkeypatch, sqlite_template) -> str:
    """A fresh SQLite tracking store (artifacts beside it) and cache, for this process and its children."""
    uri = sqlite_store(sqlite_template, tmp_path / "mlruns.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FLOWOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # `mlflow run` finds this python
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # mlflow.set_experiment leaves it behind
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    # The schema is there already (copied): a trainer started at once and a test polling the
    # store never race to create the same SQLite tables (a real server has them too).
    assert MlflowClient(uri).search_experiments()[0].name == "Default"
    return uri


@dataclass(frozen=True)
class TinyRun:
    """A tiny run trained once for the whole test run by `flowops train` (experiment
    'integration', run name 'tiny'): for tests whose subject is not training itself. Copy the
    store with `copy_to` before writing to it; the artifacts stay where training put them."""

    folder: Path
    experiment: Path  # the experiment file it was trained from
    spec: dict
    result: subprocess.CompletedProcess  # what `flowops train` printed and returned

    @property
    def db(self) -> Path:
        return self.folder / "mlruns.db"

    @property
    def cache(self) -> Path:
        return self.folder / "cache"

    def copy_to(self, folder: Path) -> str:
        """A store of one's own holding the trained run (and the warm cache): its URI."""
        if self.cache.exists():
            shutil.copytree(self.cache, folder / "cache", dirs_exist_ok=True)
        return sqlite_store(self.db, folder / "mlruns.db")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synth_root, sqlite_template) -> TinyRun:
    spec = tiny_spec(synth_root)

    def train(folder: Path) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "MLFLOW_TRACKING_URI": sqlite_store(sqlite_template, folder / "mlruns.db"),
            "FLOWOPS_CACHE_DIR": str(folder / "cache"),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        proc = flowops("train", str(write_experiment(folder, spec)), env=env)
        (folder / "train.json").write_text(json.dumps([proc.returncode, proc.stdout, proc.stderr]))

    folder = built_once(tmp_path_factory, "trained-tiny", train)
    code, out, err = json.loads((folder / "train.json").read_text())
    result = subprocess.CompletedProcess(["flowops", "train"], code, out, err)
    assert code == 0, err[-3000:]
    return TinyRun(folder, folder / "experiments" / "tiny.yaml", spec, result)


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
