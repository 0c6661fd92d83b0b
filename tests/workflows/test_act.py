"""The real workflow files executed end to end by nektos/act, in host mode, offline.

GitHub itself cannot exist here: act plays the runner (ubuntu-latest, self-hosted and gpu
all map to this host), the event payloads are written by hand, and every remote action is
mapped to a local stand-in that only echoes (their steps are skipped under act anyway, but
act clones every action before evaluating `if:`). Everything else is real: git, the
MLflow store, flowops, the training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flowops.spec.experiment import ExperimentSpec

from ..gitrepo import GitRepo
from ..integration.conftest import tiny_spec
from .conftest import PINNED

BIN = Path(sys.executable).parent
VENV = BIN.parent
POLICY = {"model_name": "act-model", "targets": {"production": {"thresholds": [{"metric": "val_iou", "min": 0.0}]}}}
REMOTE = {
    "actions/setup-python": "5fda3b95a4ea91299a34e894583c3862153e4b97",
    "iterative/setup-cml": "f12ea7685438c1fc438d50f77519b3860cf5fa98",
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stand-in")
    (folder / "action.yml").write_text(
        yaml.safe_dump(
            {
                "name": "offline stand-in",
                "description": "replaces a remote action under act",
                "runs": {"using": "composite", "steps": [{"run": "echo stand-in", "shell": "bash"}]},
            }
        )
    )
    return folder


class Repo(GitRepo):
    """A team repository: this project's code and workflows, a policy, PR branches."""

    def __init__(self, path: Path):
        super().__init__(path, ["src", "MLproject", "conda.yaml", ".github"])
        (path / "registry_policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
        (path / ".gitignore").write_text(
            "/mlruns.db\n/mlartifacts/\n/report/\n/run_id.txt\n/promote.log\n/promote.md\n"
        )
        (path / "experiments").mkdir()
        (path / "experiments" / ".keep").write_text("")
        self.git("remote", "add", "origin", "https://github.com/acme/flowops.git")
        self.commit("code, workflows and policy")

    def pr(self, branch: str, files: dict[str, str]) -> tuple[str, str]:
        """Branch off main and commit the files; stays checked out on the branch."""
        self.git("checkout", "-q", "main")
        base = self.git("rev-parse", "HEAD")
        self.git("checkout", "-q", "-b", branch)
        for name, text in files.items():
            (self.path / name).write_text(text)
        return base, self.commit(f"PR {branch}")


def act(
    repo: Repo, event: str, payload: dict, workflow: str, stand_in: Path, store: str, cache: Path
) -> subprocess.CompletedProcess:
    (repo.path.parent / "event.json").write_text(json.dumps(payload))
    maps = [x for action, sha in REMOTE.items() for x in ("--local-repository", f"{action}@{sha}={stand_in}")]
    cmd = [
        str(BIN / "act"),
        event,
        "-e",
        str(repo.path.parent / "event.json"),
        "-W",
        f".github/workflows/{workflow}",
        "-P",
        "ubuntu-latest=-self-hosted",
        "-P",
        "self-hosted=-self-hosted",
        "-P",
        "gpu=-self-hosted",
        "--no-cache-server",
        "--action-cache-path",
        str(repo.path.parent / "act-cache"),
        *maps,
        "--var",
        f"FLOWOPS_VENV={VENV}",
        "-s",
        f"MLFLOW_TRACKING_URI={store}",
        "--env",
        f"FLOWOPS_CACHE_DIR={cache}",
    ]
    return subprocess.run(cmd, cwd=repo.path, capture_output=True, text=True, timeout=900)


def job_summary(stdout: str) -> str:
    """What the jobs wrote to $GITHUB_STEP_SUMMARY: act prints 'Summary - ' and the lines after it."""
    blocks, current = [], None
    for line in stdout.splitlines():
        if "Summary - " in line:
            current = [line.split("Summary - ", 1)[1]]
            blocks.append(current)
        elif line.startswith("["):
            current = None
        elif current is not None:
            current.append(line)
    return "\n".join("\n".join(b) for b in blocks)


def pr_payload(base: str, head: str, number: int, fork: bool = False, labels=(), action: str = "opened") -> dict:
    repo = {"full_name": "acme/flowops"}
    return {
        "action": action,
        "number": number,
        "repository": repo,
        "pull_request": {
            "number": number,
            "base": {"sha": base, "ref": "main", "repo": repo},
            "head": {
                "sha": head,
                "ref": "feature",
                "repo": {"full_name": "stranger/flowops" if fork else "acme/flowops"},
            },
            "labels": [{"name": n} for n in labels],
        },
    }


@pytest.fixture
def setup(tmp_path, synth_root, stand_in):
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    return Repo(tmp_path / "team"), store, tmp_path / "cache"


def experiment_text(synth_root: Path, name: str, **changes) -> str:
    spec = tiny_spec(synth_root, name=name, experiment_name="act", **changes)
    return "# yaml-language-server: $schema=schema.json\n" + yaml.safe_dump(spec, sort_keys=False)


def test_pull_request_trains_and_reports_then_merge_promotes(setup, synth_root, stand_in):
    repo, store, cache = setup
    text = experiment_text(synth_root, "act-tiny")
    base, head = repo.pr("feature", {"experiments/tiny.yaml": text})
    proc = act(repo, "pull_request", pr_payload(base, head, 5), "experiment.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "ok: 2 file(s) valid (1 experiment(s))" in out  # validate ran
    assert "Job succeeded" in out and "train experiments/tiny.yaml" in out
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("act").experiment_id])
    spec = ExperimentSpec.model_validate(yaml.safe_load(text))
    assert run.info.status == "FINISHED"
    assert run.data.tags["flowops.spec_sha256"] == spec.sha256()
    assert run.data.tags["flowops.pr_number"] == "5"  # from the event payload
    assert run.data.tags["flowops.git_commit"] == head
    # The report reaches the job summary (act prints it; on GitHub it is also the sticky comment).
    summary = job_summary(proc.stdout)
    assert "<!-- flowops-report: experiments/tiny.yaml -->" in summary
    assert "Merging this will move **`production`** from unset to the new version." in summary
    assert "| **val_iou** |" not in summary  # first model: no comparison table
    assert "No model holds any alias yet" in summary

    # the merge: a push to main
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feature", "-m", "Merge pull request #5 from acme/feature")
    after = repo.git("rev-parse", "HEAD")
    push = {"ref": "refs/heads/main", "before": base, "after": after, "repository": {"full_name": "acme/flowops"}}
    proc = act(repo, "push", push, "promote.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "production: moved unset -> v1 (experiments/tiny.yaml)" in out
    version = client.get_model_version_by_alias("act-model", "production")
    assert version.run_id == run.info.run_id
    assert version.tags["flowops.merge_commit"] == after
    audits = [
        json.loads(v)
        for k, v in client.get_registered_model("act-model").tags.items()
        if k.startswith("flowops.audit.")
    ]
    assert [(a["alias"], a["from_version"], a["to_version"], a["commit"], a["pr"]) for a in audits] == [
        ("production", None, "1", after, "5")
    ]


def test_invalid_experiment_stops_at_validate(setup, synth_root, stand_in):
    repo, store, cache = setup
    bad = experiment_text(synth_root, "broken").replace("epochs: 2", "epochs: 0")
    base, head = repo.pr("bad", {"experiments/broken.yaml": bad})
    line = bad.splitlines().index("epochs: 0") + 1
    proc = act(repo, "pull_request", pr_payload(base, head, 6), "experiment.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"experiments/broken.yaml:{line}: epochs: must be >= 1 (got 0)" in out
    assert "train experiments/broken.yaml" not in out
    assert (
        not Path(store.removeprefix("sqlite:///")).exists() or MlflowClient(store).get_experiment_by_name("act") is None
    )


def test_fork_pr_without_the_label_does_not_train(setup, synth_root, stand_in):
    repo, store, cache = setup
    base, head = repo.pr("fork", {"experiments/fork.yaml": experiment_text(synth_root, "from-a-fork")})
    proc = act(repo, "pull_request", pr_payload(base, head, 7, fork=True), "experiment.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert '"experiments": ["experiments/fork.yaml"]' in out  # validated and listed
    assert "train experiments/fork.yaml" not in out  # but not trained
    assert (
        not Path(store.removeprefix("sqlite:///")).exists() or MlflowClient(store).get_experiment_by_name("act") is None
    )


def test_pinned_stand_ins_match_the_workflows():
    assert REMOTE and all(PINNED[a] == sha for a, sha in REMOTE.items())
