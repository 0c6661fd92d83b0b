"""`flowops init --template tabular`: a repository for a model that is not the segmentation trainer,
which validates and trains through its own MLflow Project. (The rest of the loop for such projects,
report, promote and serve, is issue #23's next step.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flowops.spec.generic import entry_point, load_generic

from ..conftest import REPO, sqlite_store
from .conftest import flowops


def test_init_validate_train(tmp_path, store):
    repo = tmp_path / "tabular"
    made = flowops("init", "--template", "tabular", str(repo))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (repo / "experiments").iterdir()) == ["baseline.yaml", "strong-regularisation.yaml"]
    assert sorted(p.name for p in (repo / ".github" / "workflows").iterdir()) == [
        "experiment.yml",
        "promote.yml",
        "train.yml",
    ]
    # #31: never a bare name from the default index (PyPI's `flowops` is an unrelated package): this
    # project's distribution, pinned to the commit of the checkout the suite runs
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    pin = (repo / ".github" / "flowops-requirement.txt").read_text().splitlines()[-1]
    assert pin.startswith("flowops-gitops @ git+") and pin.endswith(f"@{head}"), pin
    assert not pin.startswith("flowops==") and not pin.startswith("flowops ")
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


WITHOUT_SEGMENTATION = Path(__file__).parent / "without_segmentation"  # its sitecustomize masks the template


def test_the_whole_loop_on_the_tabular_template(tmp_path, store, monkeypatch):
    """validate, train each PR through the MLflow Project, report, promote on merge, serve and
    predict over MLflow's JSON protocol, roll back by reverting the merge: for a model that is
    not the segmentation trainer, with nothing of it in the engine. Every process of the loop
    runs as if the segmentation template were not installed (#34)."""
    import json
    import sys

    import requests

    from .services import Service

    monkeypatch.setenv("PYTHONPATH", str(WITHOUT_SEGMENTATION))
    masked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.metadata as m; print(len(m.entry_points(group='flowops.report')))\n"
            "import flowops.segmentation",
        ],
        capture_output=True,
        text=True,
    )
    assert masked.returncode == 1 and masked.stdout == "0\n", masked.stdout + masked.stderr
    assert "No module named 'flowops.segmentation' (the segmentation template is masked)" in masked.stderr

    repo = tmp_path / "tabular"
    assert flowops("init", "--template", "tabular", str(repo)).returncode == 0
    git = _Git(repo)
    git("init", "-q", "-b", "main")
    shipped = {p.name: p.read_text() for p in (repo / "experiments").iterdir()}
    for path in (repo / "experiments").iterdir():
        path.unlink()
    git.commit("the project, no experiment yet")

    def pull_request(branch: str, name: str) -> str:
        """Add one experiment on a branch, validate, train it there, report; merge with a merge commit."""
        git("checkout", "-q", "-b", branch)
        (repo / "experiments" / name).write_text(shipped[name])
        git.commit(f"experiment {name}")
        checked = flowops("validate", cwd=repo)
        assert checked.returncode == 0, checked.stderr
        trained = flowops("train", f"experiments/{name}", cwd=repo)
        assert trained.returncode == 0, trained.stderr[-3000:]
        run_id = trained.stdout.split()[1]
        out = tmp_path / f"report-{branch}"
        made = flowops("report", "--run", run_id, "--out", str(out), "--experiment", f"experiments/{name}", cwd=repo)
        assert made.returncode == 0, made.stderr[-3000:]
        git("checkout", "-q", "main")
        git("merge", "-q", "--no-ff", branch, "-m", f"Merge {branch}")
        return run_id

    def promote() -> str:
        done = flowops("promote", "--git-range", "HEAD~1..HEAD", cwd=repo)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    weaker = pull_request("pr-1", "strong-regularisation.yaml")  # C=0.1: val_accuracy 0.979
    said = promote()
    assert "staging: moved unset -> v1 (experiments/strong-regularisation.yaml)" in said, said
    assert "production: moved unset -> v1 (experiments/strong-regularisation.yaml)" in said, said

    better = pull_request("pr-2", "baseline.yaml")  # C=1.0: val_accuracy 0.986, 0.007 better than v1
    report = json.loads((tmp_path / "report-pr-2" / "report.json").read_text())
    markdown = (tmp_path / "report-pr-2" / "report.md").read_text()
    assert "val_accuracy" in markdown and "| C |" in markdown.replace("`", ""), markdown
    production = report["aliases"]["production"]
    assert production["same_eval_set"] is True and production["decision"]["promote"] is True, production
    gain = production["metrics"]["val_accuracy"]
    assert gain["delta"] == pytest.approx(0.986014 - 0.979021, abs=1e-5)
    assert gain["ci_low"] < gain["delta"] < gain["ci_high"] and gain["examples"] == 143  # paired, row by row
    assert "- val_accuracy vs production v1: +0.0070, 95% interval [" in markdown
    assert "![confusion_matrix](report/confusion_matrix.png)" in markdown
    assert (tmp_path / "report-pr-2" / "report" / "confusion_matrix.png").stat().st_size > 1000
    assert "per-class" not in markdown and "learning curves" not in markdown  # nothing the run did not log
    said = promote()
    assert "production: moved v1 -> v2 (experiments/baseline.yaml)" in said, said
    client = MlflowClient(store)
    assert client.get_model_version_by_alias("tabular-classifier", "production").run_id == better

    service = Service(store, "--poll", "0.5", model="tabular-classifier")
    try:
        health = service.wait_ready()
        assert (health["version"], health["run_id"]) == ("2", better)
        from sklearn.datasets import load_breast_cancer

        rows = load_breast_cancer(as_frame=True).data.head(5)
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        answer = requests.post(f"{service.url}/invocations", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == "2"
        assert answer.json() == {"predictions": [0, 0, 0, 0, 0]}  # the first five rows are malignant (0)
        wrong = requests.post(f"{service.url}/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1]]}})
        assert wrong.status_code == 400 and "x" in wrong.json()["error"], wrong.text
        image = requests.post(f"{service.url}/predict", data=b"\xff\xd8", headers={"content-type": "image/jpeg"})
        assert image.status_code == 415 and "/invocations" in image.json()["error"]

        git("revert", "--no-edit", "-m", "1", "HEAD")  # the baseline merge was a mistake
        said = promote()
        assert "production: moved v2 -> v1" in said, said
        assert client.get_model_version_by_alias("tabular-classifier", "production").run_id == weaker
        deadline = time.monotonic() + 60
        while requests.get(f"{service.url}/health", timeout=5).json()["version"] != "1":
            assert time.monotonic() < deadline, "serving did not follow the alias back to v1"
            time.sleep(0.2)
    finally:
        service.stop()
    status = flowops("status", cwd=repo)
    assert status.returncode == 0 and "production: v1" in status.stdout, status.stdout + status.stderr


class _Git:
    def __init__(self, path):
        self.path = path

    def __call__(self, *args: str) -> str:
        ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        done = subprocess.run(["git", *ident, *args], cwd=self.path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def commit(self, message: str) -> None:
        self("add", "-A")
        self("commit", "-qm", message)


def test_init_segmentation_writes_a_repository_that_validates(tmp_path):
    repo = tmp_path / "seg"
    made = flowops("init", "--template", "segmentation", str(repo))
    assert made.returncode == 0, made.stderr
    assert "flowops data synth --out data/synth" in made.stdout
    assert not (repo / "flowops.yaml").exists()  # the built-in schema: no declaration needed
    synth = flowops("data", "synth", "--out", "data/synth", "--images", "10", cwd=repo)
    assert synth.returncode == 0, synth.stderr
    checked = flowops("validate", cwd=repo)
    assert (checked.returncode, checked.stdout.strip()) == (0, "ok: 2 file(s) valid (1 experiment(s))"), checked.stderr


def test_a_pr_run_of_the_tabular_template_crosses_the_trust_boundary(tmp_path, store, sqlite_template):
    """The PR path of train.yml: train into the job's own store, bundle export, then the trusted stage
    imports it with lineage from git; a merge of that file then binds exactly this run."""
    from flowops.promotion.binding import refusal
    from flowops.spec.schema import schema_of

    repo = tmp_path / "tabular"
    assert flowops("init", "--template", "tabular", str(repo)).returncode == 0
    git = _Git(repo)
    git("init", "-q", "-b", "main")
    git.commit("project")
    head = git("rev-parse", "HEAD")
    pr_store = {**os.environ, "MLFLOW_TRACKING_URI": sqlite_store(sqlite_template, tmp_path / "pr.db")}
    trained = flowops(
        "train", "experiments/baseline.yaml", "--run-id-file", str(tmp_path / "pr-run"), cwd=repo, env=pr_store
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = (tmp_path / "pr-run").read_text().strip()
    exported = flowops("bundle", "export", "--run", run_id, "--out", str(tmp_path / "bundle"), cwd=repo, env=pr_store)
    assert exported.returncode == 0, exported.stderr
    imported = flowops(
        "bundle", "import", str(tmp_path / "bundle"), "--experiment-file", "experiments/baseline.yaml",
        "--head-sha", head, "--pr", "7", "--repo", str(repo), "--run-id-file", str(tmp_path / "team-run"),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    client = MlflowClient(store)
    run = client.get_run((tmp_path / "team-run").read_text().strip())
    assert run.info.status == "FINISHED" and run.data.tags["flowops.pr_number"] == "7"
    assert run.data.metrics["val_accuracy"] > 0.98
    schema = schema_of(repo)
    merged = schema.load(repo / "experiments" / "baseline.yaml")
    assert refusal(client, run, merged, run.data.tags["flowops.code_tree"], True, schema) is None
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")} == {"evaluation/per_example.npz"}


def test_a_holder_that_recorded_no_eval_set_is_scored_on_the_candidates_rows(tmp_path, store):
    """#30: the first model a project promoted recorded no `flowops.eval_set` (its code forgot the tag).
    It used to freeze production: every later candidate was "not comparable". With the project's
    evaluate entry point, `flowops train --holders` scores the holder on the candidate's own rows,
    the comparison and its interval come from those, and merging moves production."""
    import json

    repo = tmp_path / "tabular"
    assert flowops("init", "--template", "tabular", str(repo)).returncode == 0
    git = _Git(repo)
    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "root")
    baseline = repo / "experiments" / "baseline.yaml"
    later = baseline.read_text()
    baseline.unlink()
    git.commit("the project and its first experiment")
    trained = flowops("train", "experiments/strong-regularisation.yaml", cwd=repo)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = MlflowClient(store)
    first = trained.stdout.split()[1]
    client.delete_tag(first, "flowops.eval_set")  # as if the project's code had not logged it
    done = flowops("promote", "--git-range", "HEAD~1..HEAD", cwd=repo)
    assert done.returncode == 0 and "production: moved unset -> v1" in done.stdout, done.stdout + done.stderr

    def report(run_id: str, out: str) -> dict:
        made = flowops("report", "--run", run_id, "--out", str(tmp_path / out), cwd=repo)
        assert made.returncode == 0, made.stderr[-3000:]
        return json.loads((tmp_path / out / "report.json").read_text())["aliases"]["production"]

    baseline.write_text(later)
    git.commit("the next experiment")
    alone = flowops("train", "experiments/baseline.yaml", cwd=repo)
    assert alone.returncode == 0, alone.stderr[-3000:]
    frozen = report(alone.stdout.split()[1], "frozen")
    assert [c["detail"] for c in frozen["decision"]["checks"] if not c["passed"]] == [
        "not comparable: v1 records no evaluation set (flowops.eval_set); score it on this run's data: "
        "flowops train --holders (segmentation, or a project's evaluate entry point)"
    ]

    holders = tmp_path / "holders"
    exported = flowops("holders", "export", "--out", str(holders), cwd=repo)
    assert exported.returncode == 0, exported.stderr
    scored = flowops("train", "experiments/baseline.yaml", "--holders", str(holders), cwd=repo)
    assert scored.returncode == 0, scored.stderr[-3000:]
    run = client.get_run(scored.stdout.split()[1])
    tags = run.data.tags
    assert (tags["flowops.holder.production"], tags["flowops.holder.production.run_id"]) == ("scored", first)
    # The holder's numbers on these rows are its own run's (same model, same rows).
    assert run.data.metrics["holder.production.val_accuracy"] == pytest.approx(
        client.get_run(first).data.metrics["val_accuracy"]
    )
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert listed == {"evaluation/per_example.npz", "evaluation/holder.production.per_example.npz",
                      "evaluation/holder.staging.per_example.npz"}  # fmt: skip
    compared = report(run.info.run_id, "scored")
    assert compared["holder"]["scored_by_candidate"] is True and compared["decision"]["promote"] is True, compared
    cell = compared["metrics"]["val_accuracy"]
    assert cell["examples"] == 143 and cell["ci_low"] < cell["delta"] < cell["ci_high"], cell
