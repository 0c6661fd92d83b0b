"""Shared fixtures for every tier."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .parallel import built_once as _built_once

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist runs several workers on a 2-core machine: TensorFlow and OpenMP in each one
# (and in the trainings they start) use one thread for a kernel, instead of one per core each.
for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text|bytes) -> Path of a file under a temp dir."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return _write


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny synthetic COCO-format dataset shared by the run (integration and workflows)."""
    from flowops.segmentation.data.synth import generate

    return _built_once(tmp_path_factory, "synth", lambda root: generate(root, images=30, width=64, height=48, seed=11))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """An empty SQLite tracking store with MLflow's schema, migrated once for the whole run:
    MLflow's migrations take seconds (about 19 under load), copying the file a fraction of one."""

    def migrate(folder: Path) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{folder / 'mlruns.db'}").search_experiments()

    return _built_once(tmp_path_factory, "sqlite-template", migrate) / "mlruns.db"


def sqlite_store(template: Path, path: Path) -> str:
    """A fresh store at `path` (a copy of the migrated template): its sqlite:/// URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# Under `pytest -n N --dist loadgroup` (make test): tests that share a module-scoped fixture
# (a trained model, a started service) go to one worker, so the fixture is built once; tests
# that share a fixed resource name it with @pytest.mark.xdist_group. Every other test is
# scheduled on its own. Known-slow modules start first so none of them is left for the end.
SLOW_FIRST = (
    "tests/integration/test_reconcile.py",
    "tests/integration/test_tutorial.py",
    "tests/workflows/test_act.py",
    "tests/integration/test_server.py",
    "tests/integration/test_identities.py",
    "tests/integration/test_adopt.py",
    "tests/integration/test_tabular_template.py",
    "tests/integration/test_fail_closed.py",
    "tests/integration/test_abandoned_runs.py",
    "tests/integration/test_distributed.py",
    "tests/integration/test_serve.py",
    "tests/integration/test_training.py",
)


def _shares_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return bool(info) and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group to each test's id
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not item.get_closest_marker("xdist_group") and _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))

    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the order within a module stays


# What the machine itself must provide (the tests start these, they do not install them).
SYSTEM_NEEDS = {
    "sftp": ("/usr/sbin/sshd", "OpenSSH's sshd: apt-get install openssh-server"),
    "postgres_db": ("pg_isready", "PostgreSQL: apt-get install postgresql"),
}


def pytest_collection_finish(session):
    """Fail at once, in one line, when a selected test needs a system package that is missing
    (rather than erroring test after test, minutes in)."""
    import shutil

    needed = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in SYSTEM_NEEDS}
    if "mlflow_server" in {n for item in session.items for n in getattr(item, "fixturenames", ())}:
        needed.add("sftp")
    missing = [
        what
        for name, (program, what) in sorted(SYSTEM_NEEDS.items())
        if name in needed and not (Path(program).exists() if program.startswith("/") else shutil.which(program))
    ]
    if missing:
        pytest.exit(f"these tests need {'; '.join(missing)} (.ci/run installs them)", returncode=1)
