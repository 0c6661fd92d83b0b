"""Shared fixtures for every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
    """A tiny synthetic COCO-format dataset shared by the session (integration and workflows)."""
    from flowops.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, images=30, width=64, height=48, seed=11)
    return root


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
