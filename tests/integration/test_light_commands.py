"""The commands that run on every PR push or merge stay light: each one, in a fresh process, as users run it.

`validate`, `changed`, `schema`, `report`, `promote`, `status`, `history`, `rollback` and `doctor` never
import TensorFlow (nor the segmentation trainer); `validate`, `changed` and `schema` never import MLflow.
Each command is run for real against a real store, to its expected exit code, so the path checked is
the whole path a user takes, not an import of the module.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import sqlite_store
from .conftest import BIN
from .test_promote import TeamRepo, fake_run, spec

PROBE = """
import json, os, sys
from flowops.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="flowops")
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted({m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "segmentation_models", "mlflow")
                 or m.startswith(("flowops.training", "flowops.segmentation.training", "flowops.segmentation.data.pipeline"))})
with open(os.environ["PROBE_OUT"], "w") as fh:
    json.dump({"code": code, "loaded": loaded}, fh)
"""


def run_fresh(repo: Path, tmp: Path, *args: str, prelude: str = "") -> tuple[int, set[str], str]:
    """(exit code, top-level names of the heavy modules it imported, output) of `flowops ARGS` in a new interpreter."""
    out = tmp / "probe.json"
    env = {**os.environ, "PROBE_OUT": str(out)}
    command = [str(BIN / "python"), "-c", prelude + PROBE, *args]
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text())
    tops = {m if m.startswith("flowops.") else m.split(".")[0] for m in data["loaded"]}
    return data["code"], tops, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def merged(tmp_path_factory, sqlite_template):
    """A team repository with two merges promoted, so every registry command has something to read."""
    tmp = tmp_path_factory.mktemp("light")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", sqlite_store(sqlite_template, tmp / "mlruns.db"))
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    repo = TeamRepo(tmp / "team", {"model_name": "team-model"})
    first = repo.merge("merge", {"a.yaml": spec("a")})
    fake_run(repo, spec("b"), 0.6)
    run_a = fake_run(repo, spec("a"), 0.5)
    yield repo, tmp, first, run_a
    mp.undo()


def test_commands_of_every_push_never_import_mlflow_or_tensorflow(merged, tmp_path):
    repo, _, first, _ = merged
    before, after = first.split("..")
    for args in (
        ["validate"],
        ["changed", "--base", before, "--head", after],
        ["schema", "--out", str(tmp_path / "s.json")],
    ):
        code, heavy, output = run_fresh(repo.path, tmp_path, *args)
        assert (code, heavy) == (0, set()), f"flowops {' '.join(args)}: {output[-2000:]}"


def test_registry_commands_never_import_tensorflow(merged, tmp_path):
    repo, _, first, run_a = merged
    second = repo.merge("merge", {"b.yaml": spec("b")})
    steps = [
        ["promote", "--git-range", first],
        ["promote", "--git-range", second],
        ["status"],
        ["history"],
        ["rollback", "--alias", "production", "--reason", "light"],
        ["report", "--run", run_a, "--out", str(tmp_path / "report")],
        ["doctor"],
    ]
    for args in steps:
        code, heavy, output = run_fresh(repo.path, tmp_path, *args)
        assert code == 0, f"flowops {' '.join(args)}: {output[-2000:]}"
        assert heavy == {"mlflow"}, f"flowops {' '.join(args)} imported {sorted(heavy)}"
    assert (tmp_path / "report" / "report.md").is_file()


def test_the_probe_sees_a_heavy_import(merged, tmp_path):
    """The check can fail: the same probe reports TensorFlow once something on the path imports it."""
    repo, _, _, _ = merged
    prelude = "from flowops.segmentation.tfenv import configure_tensorflow\nconfigure_tensorflow()\n"
    code, heavy, output = run_fresh(repo.path, tmp_path, "validate", prelude=prelude)
    assert code == 0, output
    assert "tensorflow" in heavy


def test_validate_reads_the_templates_schema_and_metrics_without_numpy(merged, tmp_path):
    """`flowops validate` runs on every push: the template's plug-ins it loads (its schema, its metric
    vocabulary for the policy's default primary metric) import no numpy either."""
    repo, _, _, _ = merged
    probe = (
        "import sys\nfrom flowops.cli.main import cli\n"
        "try:\n    cli.main(['validate'], prog_name='flowops')\nexcept SystemExit as exc:\n    code = exc.code\n"
        "from flowops.spec.vocabulary import vocabulary\n"
        "print(code, vocabulary().primary, sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL'}))\n"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", probe], cwd=repo.path, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.splitlines()[-1] == "0 val_miou []", done.stdout + done.stderr
