"""`flowops init --template tabular`: a repository for a model that is not the segmentation trainer,
which validates and trains through its own MLflow Project. (The rest of the loop for such projects,
report, promote and serve, is issue #23's next step.)"""

from __future__ import annotations

import os
import subprocess

from mlflow.tracking import MlflowClient

from flowops.spec.generic import entry_point, load_generic

from .conftest import flowops


def test_init_validate_train(tmp_path, store):
    repo = tmp_path / "tabular"
    made = flowops("init", "--template", "tabular", str(repo))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (repo / "experiments").iterdir()) == ["baseline.yaml", "strong-regularisation.yaml"]
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@e.invalid", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    checked = flowops("validate", cwd=repo)
    assert checked.returncode == 0 and checked.stdout.strip() == "ok: 3 file(s) valid (2 experiment(s))", checked.stderr
    # No virtual environment on PATH: the MLproject runs the interpreter flowops runs in.
    trained = flowops(
        "train", "experiments/strong-regularisation.yaml", cwd=repo, env={**os.environ, "PATH": "/usr/bin:/bin"}
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("tabular").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "strong-regularisation"
    assert run.data.metrics["val_accuracy"] > 0.9  # a real model on real (bundled) data
    assert {k: run.data.params[k] for k in ("C", "max_iter")} == {"C": "0.1", "max_iter": "500"}
    spec = load_generic(repo / "experiments/strong-regularisation.yaml", entry_point(repo))
    tags = run.data.tags
    assert tags["flowops.spec_sha256"] == spec.sha256()  # how a merge will find this run
    assert (
        tags["flowops.git_commit"]
        == subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    )
    assert tags["flowops.code_dirty"] == "false"


def test_init_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = flowops("init", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"{tmp_path}: not empty; flowops init writes into a new or empty folder")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
