"""The test suite's own parallel machinery (tests/parallel.py, tests/conftest.py): what it
promises must hold, or `make test` builds module fixtures once per worker, or two servers
get the same port, without any test failing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from .. import parallel

GROUPED = """
import os
import pytest

@pytest.fixture(scope="module")
def built():
    with open(os.environ["LOG"], "a") as f:
        f.write("built " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")

@pytest.mark.parametrize("i", range(6))
def test_shares(built, i):
    with open(os.environ["LOG"], "a") as f:
        f.write("ran " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""

ALONE = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_alone(i):
    pass
"""


def test_a_module_fixture_is_built_once_under_make_tests_scheduling(tmp_path):
    """Tests that share a module-scoped fixture run on one worker (xdist_group by module);
    pytest 9.2 made xdist's loadgroup spread them silently (pytest-xdist#1386)."""
    from ..conftest import REPO

    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "test_grouped.py").write_text(textwrap.dedent(GROUPED))
    (tmp_path / "test_other.py").write_text(textwrap.dedent(ALONE))
    log = tmp_path / "log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "3",
            "--dist",
            "loadgroup",
            "--no-loadscope-reorder",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env={**os.environ, "LOG": str(log), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = log.read_text().splitlines()
    built = [line for line in lines if line.startswith("built")]
    ran = {line.split()[1] for line in lines if line.startswith("ran")}
    assert len(built) == 1, lines  # one worker built it ...
    assert ran == {built[0].split()[1]}, lines  # ... and ran every test that uses it
    assert "12 passed" in proc.stdout


def test_workers_get_ports_of_their_own(monkeypatch):
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        low = parallel.PORT_BASE + parallel.PORT_BLOCK * index
        monkeypatch.setattr(parallel, "_ports", iter(range(low, 65536)))
        ports = [parallel.free_port() for _ in range(5)]
        assert len(set(ports)) == 5 and all(low <= p < low + parallel.PORT_BLOCK for p in ports), (index, ports)
        assert max(ports) < 32768  # below the kernel's ephemeral range (bind(0), outgoing connections)


def test_a_port_in_use_is_skipped(monkeypatch):
    port = parallel.free_port()  # this worker's own, free now
    monkeypatch.setattr(parallel, "_ports", iter(range(port, port + parallel.PORT_BLOCK)))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        assert parallel.free_port() > port


class _Factory:
    def __init__(self, base: Path):
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_built_once_builds_once_for_every_worker_and_again_after_a_failed_build(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    factory, builds = _Factory(tmp_path), []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "made").write_text("x")

    def failing(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise RuntimeError("the build broke")

    try:
        parallel.built_once(factory, "thing", failing)
    except RuntimeError:
        pass
    threads = [threading.Thread(target=parallel.built_once, args=(factory, "thing", build)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [tmp_path / "thing"]
    assert sorted(p.name for p in (tmp_path / "thing").iterdir()) == ["made"]  # the broken build's file is gone
