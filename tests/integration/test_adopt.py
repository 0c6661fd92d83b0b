"""`flowops init --existing` on an MLflow Project nobody here wrote (#31).

The project is shaped like MLflow's own wine example (sklearn_elasticnet_wine): an ElasticNet,
`python train.py {alpha} {l1_ratio}` with positional arguments, rmse/mae/r2, a model logged by
`mlflow.sklearn.log_model(lr, "model")`, a conda.yaml and no requirements.txt. Its data is
scikit-learn's bundled diabetes set (nothing is downloaded here); its only flowops-specific lines
are the documented eval-set tag.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient

from .conftest import BIN, flowops

MLPROJECT = """name: tutorial

conda_env: conda.yaml

entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
    command: "python train.py {alpha} {l1_ratio}"
"""

CONDA = """name: tutorial
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - mlflow>=3.17,<3.18
      - scikit-learn
"""

TRAIN = """import sys
import hashlib

import numpy as np
import mlflow
import mlflow.sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def eval_metrics(actual, pred):
    rmse = np.sqrt(mean_squared_error(actual, pred))
    return rmse, mean_absolute_error(actual, pred), r2_score(actual, pred)


if __name__ == "__main__":
    x, y = load_diabetes(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(x, y, random_state=42)
    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    with mlflow.start_run():
        mlflow.set_tag("flowops.eval_set", hashlib.sha256(test_x.tobytes() + test_y.tobytes()).hexdigest())  # flowops
        lr = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        lr.fit(train_x, train_y)
        rmse, mae, r2 = eval_metrics(test_y, lr.predict(test_x))
        mlflow.log_metric("rmse", rmse)
        mlflow.log_metric("r2", r2)
        mlflow.log_metric("mae", mae)
        mlflow.sklearn.log_model(lr, name="model")
"""


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    return subprocess.run(["git", *ident, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_an_existing_mlflow_project_is_onboarded_in_place_and_its_loop_works(tmp_path):
    repo = tmp_path / "wine"
    repo.mkdir()
    for name, text in (("MLproject", MLPROJECT), ("conda.yaml", CONDA), ("train.py", TRAIN)):
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the wine example")
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PATH": "/usr/bin:/bin"}  # flowops by its full path
    client = MlflowClient(store)
    with_runs = client.create_run("0", run_name="by hand")  # `mlflow run .` before flowops: Default
    for key, value in (("rmse", 60.0), ("r2", 0.4), ("mae", 50.0)):
        client.log_metric(with_runs.info.run_id, key, value)
    client.set_terminated(with_runs.info.run_id)

    made = flowops("init", "--existing", str(repo), cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == "primary metric rmse (of the metrics its runs logged: rmse, r2, mae)"
    written = {line.split(" ", 1)[1] for line in made.stdout.splitlines() if line.startswith("wrote ")}
    assert {str(repo / n) for n in ("flowops.yaml", "registry_policy.yaml", "experiments/baseline.yaml")} <= written
    assert str(repo / ".github/workflows/train.yml") in written and not (repo / "requirements.txt").exists()
    assert (repo / "experiments/baseline.yaml").read_text().splitlines()[2:] == ["alpha: 0.5", "l1_ratio: 0.1"]
    assert "rmse: min" in (repo / "registry_policy.yaml").read_text()
    pin = (repo / ".github/flowops-requirement.txt").read_text().splitlines()[-1]
    assert pin.startswith("flowops-gitops @ git+") and "flowops==" not in pin
    # the train job installs the project's environment: conda.yaml's pip list, no TensorFlow
    needs = flowops("requirements", "--project", str(repo), env=env)
    assert needs.stdout.splitlines() == ["mlflow>=3.17,<3.18", "scikit-learn"], needs.stderr
    again = flowops("init", "--existing", str(repo), cwd=tmp_path, env=env)  # never overwrites
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("wrote ")]
    assert f"kept {repo / 'flowops.yaml'} (it exists; not overwritten)" in again.stdout

    checked = flowops("validate", cwd=repo, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "flowops init --existing")
    first = git(repo, "rev-parse", "HEAD")  # a root's child; the experiment came with it
    trained = flowops("train", "experiments/baseline.yaml", cwd=repo, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "INFO mlflow" not in trained.stderr and "warning:" not in trained.stderr  # quiet, and shippable
    promoted = flowops("promote", "--git-range", f"{first}~1..{first}", cwd=repo, env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "production: moved unset -> v1 (experiments/baseline.yaml)" in promoted.stdout
    # no evaluate entry point: nothing would score the holders on a PR's rows, so none is exported
    exported = flowops("holders", "export", "--out", str(tmp_path / "holders"), cwd=repo, env=env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip().endswith("none (flowops.yaml names no evaluate entry point to score holders with)")
    assert (tmp_path / "holders" / "holders.json").read_text() == "{}\n"
    assert [p.name for p in (tmp_path / "holders").iterdir()] == ["holders.json"]

    # a PR lowers alpha (a better rmse here), trained on its branch, merged
    git(repo, "checkout", "-q", "-b", "less-regularisation")
    edited = (repo / "experiments/baseline.yaml").read_text().replace("alpha: 0.5", "alpha: 0.01")
    (repo / "experiments/baseline.yaml").write_text(edited)
    git(repo, "commit", "-qam", "alpha 0.01")
    assert flowops("train", "experiments/baseline.yaml", cwd=repo, env=env).returncode == 0
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "less-regularisation", "-m", "Merge pull request #1")
    merged = git(repo, "rev-parse", "HEAD")
    promoted = flowops("promote", "--git-range", f"{first}..{merged}", cwd=repo, env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "production: moved v1 -> v2 (experiments/baseline.yaml)" in promoted.stdout
    versions = json.loads(flowops("status", "--json", cwd=repo, env=env).stdout)
    assert [(row["alias"], row["version"], row["drift"]) for row in versions] == [
        ("staging", "2", ""),
        ("production", "2", ""),
    ]

    # revert the edit: the experiment is back at the state main had; that is a rollback, exit 0
    git(repo, "revert", "--no-edit", "-m", "1", "HEAD")
    reverted = flowops("promote", "--git-range", f"{merged}..HEAD", cwd=repo, env=env)
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert "production: moved v2 -> v1 (experiments/baseline.yaml) (revert at " in reverted.stdout
    assert "main's experiments/baseline.yaml is no longer the holder's (changed))" in reverted.stdout
    assert (BIN / "flowops").is_file()


def test_a_failed_training_is_tagged_with_the_projects_last_line_and_a_dirty_tree_is_warned(tmp_path):
    """#31: `alpha: -1` validates (the MLproject says float) and the project's code refuses it with a
    traceback: the run ends FAILED with flowops.failure = the traceback's last line, and train says it.
    Training from uncommitted code says, in one line, that the run can never ship."""
    repo = tmp_path / "wine"
    repo.mkdir()
    for name, text in (("MLproject", MLPROJECT), ("conda.yaml", CONDA), ("train.py", TRAIN)):
        (repo / name).write_text(text)
    (repo / "flowops.yaml").write_text("schema: mlproject\n")
    (repo / "experiments").mkdir()
    (repo / "experiments" / "bad.yaml").write_text("name: bad\nalpha: -1.0\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "wine")
    (repo / "train.py").write_text(TRAIN + "# an edit not committed\n")
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    failed = flowops("train", "experiments/bad.yaml", cwd=repo, env=env)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == (
        "warning: uncommitted changes to the training code (train.py): this run can never ship"
    )
    said = "InvalidParameterError: The 'alpha' parameter of ElasticNet must be a float in the range [0.0, inf)"
    assert failed.stderr.strip().splitlines()[-1].startswith("training bad failed (run ")
    assert said in failed.stderr.strip().splitlines()[-1]
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("tutorial").experiment_id])
    assert run.info.status == "FAILED" and said in run.data.tags["flowops.failure"]
    assert run.data.tags["flowops.failure"].startswith("sklearn.utils._param_validation.InvalidParameterError")
