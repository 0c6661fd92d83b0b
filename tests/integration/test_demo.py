"""`make demo`'s failure paths: they must say what went wrong, stop cleanly and leave nothing behind.
(The happy path is `make demo` itself.)"""

from __future__ import annotations

import importlib.util
import os
import socket

import pytest

from ..conftest import REPO
from .conftest import BIN


@pytest.fixture
def demo(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LOGS", tmp_path / "logs")
    return module


def test_the_demo_has_a_store_of_its_own(demo):
    """It resets its registered model on every run: not in the store the tutorial uses."""
    assert demo.URI == f"sqlite:///{REPO / '.flowops' / 'demo' / 'mlruns.db'}"


def test_a_failed_training_stops_the_demo_with_its_log_not_a_crash(demo, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncategories: [person]\nepochs: 0\n")
    assert demo.train_all([str(bad)]) is None  # was 1, which the caller took for a result and crashed on
    assert "training" in capsys.readouterr().out


def test_a_taken_port_is_reported_with_the_services_own_words(demo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as stopped:
            demo.Service("any-model", port)
    message = str(stopped.value)
    assert message.startswith("flowops serve exited with code 1: ")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in message  # not "within 300 s"


def test_the_team_repository_goes_whatever_happens(demo, monkeypatch, tmp_path):
    made = []
    real = demo.tempfile.mkdtemp

    def mkdtemp(**kwargs):
        made.append(real(**kwargs))
        return made[-1]

    monkeypatch.setattr(demo.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(demo, "_promotion", lambda *args: 1 / 0)  # anything failing half-way
    monkeypatch.setattr(demo, "URI", f"sqlite:///{tmp_path / 'demo.db'}")
    with pytest.raises(ZeroDivisionError):
        demo.promotion({}, 0)
    assert made and not any(os.path.exists(path) for path in made)
