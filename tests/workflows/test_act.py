"""The real workflow files executed end to end by nektos/act, in host mode, offline.

GitHub itself cannot exist here: act plays the runner (ubuntu-latest, self-hosted and gpu
all map to this host), the event payloads are written by hand, and every remote action is
mapped to a local stand-in that only echoes (their steps are skipped under act anyway, but
act clones every action before evaluating `if:`). Everything else is real: git, the
MLflow store, flowops, the training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flowops.segmentation.experiment import ExperimentSpec

from ..conftest import sqlite_store
from ..gitrepo import GitRepo
from ..integration.conftest import tiny_spec
from .conftest import PINNED
from .test_trust import approval_comment, fake_gh

BIN = Path(sys.executable).parent
VENV = BIN.parent
POLICY = {
    "model_name": "act-model",
    "ship_hand_logged_runs": False,  # as on a team's tracking server: only imported runs ship
    "targets": {"production": {"thresholds": [{"metric": "val_iou", "min": 0.0}]}},
}
REMOTE = {
    "actions/checkout": "3d3c42e5aac5ba805825da76410c181273ba90b1",
    "actions/setup-python": "5fda3b95a4ea91299a34e894583c3862153e4b97",
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
    "actions/download-artifact": "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
}
# Offline stand-ins for the remote actions. act copies the repository into the job for a
# checkout without `ref` (what `act()` checked out first: the commit GitHub would give the event);
# a checkout *with* `ref` (the PR's approved commit, into `path`) comes here: a copy of the
# repository ($ACT_REPO) detached at exactly that commit, whatever the branch says. setup-python only echoes (skipped under act
# anyway); the artifact actions copy folders through $ACT_ARTIFACTS, so a bundle really travels
# from the train job to the import job.
STAND_INS = {
    "actions/checkout": {
        "inputs": {
            "ref": {"default": ""},
            "path": {"default": "."},
            "persist-credentials": {"default": ""},
            "fetch-depth": {"default": ""},
        },
        "env": {"REF": "${{ inputs.ref }}", "DEST": "${{ inputs.path }}"},
        "run": 'mkdir -p "$DEST" && cp -a "$ACT_REPO"/. "$DEST" && git -C "$DEST" checkout -q --detach "$REF" '
        '&& echo "checked out $(git -C "$DEST" rev-parse HEAD) in $DEST"',
    },
    "actions/setup-python": {"inputs": {"python-version": {"default": ""}}, "run": "echo stand-in", "env": {}},
    "actions/upload-artifact": {
        "inputs": {"name": {}, "path": {}, "if-no-files-found": {"default": "warn"}, "retention-days": {"default": ""}},
        "env": {"NAME": "${{ inputs.name }}", "SRC": "${{ inputs.path }}"},
        "run": 'if [ -e "$SRC" ]; then mkdir -p "$ACT_ARTIFACTS/$NAME" && cp -a "$SRC"/. "$ACT_ARTIFACTS/$NAME"/; fi',
    },
    "actions/download-artifact": {
        "inputs": {"name": {}, "path": {}},
        "env": {"NAME": "${{ inputs.name }}", "DEST": "${{ inputs.path }}"},
        "run": 'test -d "$ACT_ARTIFACTS/$NAME" && mkdir -p "$DEST" && cp -a "$ACT_ARTIFACTS/$NAME"/. "$DEST"/',
    },
}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for action, spec in STAND_INS.items():
        folder = tmp_path_factory.mktemp("stand-in")
        step = {"run": spec["run"], "shell": "bash", "env": spec["env"]}
        (folder / "action.yml").write_text(
            yaml.safe_dump(
                {
                    "name": f"offline stand-in for {action}",
                    "description": "replaces a remote action under act",
                    "inputs": spec["inputs"],
                    "runs": {"using": "composite", "steps": [step]},
                }
            )
        )
        folders[action] = folder
    return folders


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


def github_checkout(repo: Repo, event: str, payload: dict) -> str | None:
    """Check out what GitHub runs `event` on, as act takes the workflow file and the job's workspace from
    whatever is checked out: pull_request_target the base commit, pull_request the merge of head into
    base, push the pushed commit. Returns the merge commit it made (pull_request), else None."""
    pr = payload.get("pull_request")
    if event == "pull_request_target":
        repo.git("checkout", "-q", "--detach", pr["base"]["sha"])
    elif event == "pull_request":
        repo.git("checkout", "-q", "--detach", pr["base"]["sha"])
        repo.git("merge", "-q", "--no-ff", "--no-edit", pr["head"]["sha"], "-m", f"Merge {pr['head']['sha']}")
        return repo.git("rev-parse", "HEAD")
    elif event == "push":
        repo.git("checkout", "-q", "--detach", payload["after"])
    return None


def act(
    repo: Repo, event: str, payload: dict, workflow: str, stand_in: dict[str, Path], store: str, cache: Path
) -> subprocess.CompletedProcess:
    """Run `workflow` for `event` under act with the workspace GitHub would give it; afterwards the
    repository is back on the branch (or commit) it was on."""
    was = repo.git("symbolic-ref", "-q", "--short", "HEAD", check=False) or repo.git("rev-parse", "HEAD")
    github_checkout(repo, event, payload)
    try:
        return _act(repo, event, payload, workflow, stand_in, store, cache)
    finally:
        repo.git("checkout", "-q", was)


def _act(
    repo: Repo, event: str, payload: dict, workflow: str, stand_in: dict[str, Path], store: str, cache: Path
) -> subprocess.CompletedProcess:
    (repo.path.parent / "event.json").write_text(json.dumps(payload))
    comments = repo.path.parent / "comments.json"  # what GitHub's API has: see `github_comments`
    if not comments.exists():
        comments.write_text("[]")
    maps = [x for action, sha in REMOTE.items() for x in ("--local-repository", f"{action}@{sha}={stand_in[action]}")]
    artifacts = repo.path.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
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
        "--env",
        f"ACT_ARTIFACTS={artifacts}",
        "--env",
        f"ACT_REPO={repo.path}",
        "--env",
        f"GH_COMMENTS={comments}",
    ]
    # the GitHub CLI's stand-in answers the gate's read of the PR's comments
    env = {**os.environ, "PATH": f"{fake_gh(repo.path.parent / 'fake-gh')}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=repo.path, capture_output=True, text=True, timeout=900, env=env)


def github_comments(repo: Repo, comments: list[dict]) -> None:
    """The PR's comments as the GitHub API would list them (the notify job's post is skipped under act)."""
    (repo.path.parent / "comments.json").write_text(json.dumps(comments))


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


def pr_payload(
    base: str,
    head: str,
    number: int,
    fork: bool = False,
    labels=(),
    action: str = "opened",
    label: str | None = None,
    branch: str = "feature",
) -> dict:
    """A pull_request / pull_request_target payload as GitHub sends it (the `label` object on `labeled`)."""
    repo = {"full_name": "acme/flowops"}
    payload = {
        "action": action,
        "number": number,
        "repository": repo,
        "pull_request": {
            "number": number,
            "base": {"sha": base, "ref": "main", "repo": repo},
            "head": {
                "sha": head,
                "ref": branch,
                "repo": {"full_name": "stranger/flowops" if fork else "acme/flowops"},
            },
            "labels": [{"name": n} for n in labels],
        },
    }
    if label is not None:
        payload["label"] = {"name": label}
    return payload


@pytest.fixture
def setup(tmp_path, synth_root, stand_in, sqlite_template):
    # The team's store has its schema before the matrix jobs import in parallel (two processes
    # creating one SQLite schema at once collide; a real tracking server has its schema already).
    store = sqlite_store(sqlite_template, tmp_path / "mlruns.db")
    return Repo(tmp_path / "team"), store, tmp_path / "cache"


def experiment_text(synth_root: Path, name: str, **changes) -> str:
    spec = tiny_spec(synth_root, name=name, experiment_name="act", **changes)
    return "# yaml-language-server: $schema=schema.json\n" + yaml.safe_dump(spec, sort_keys=False)


def team_runs(store: str) -> list:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("act")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_same_repo_pr_trains_without_credentials_imports_reports_then_merge_promotes(setup, synth_root, stand_in):
    repo, store, cache = setup
    text = experiment_text(synth_root, "act-tiny")
    base, head = repo.pr("feature", {"experiments/tiny.yaml": text})
    # GitHub's workspace for pull_request_target is the base commit (act() checks it out): the report
    # reads the new experiment from git at the approved head. A branch name is the PR's to choose.
    hostile = "feature<!--hide-the-rest"
    payload = pr_payload(base, head, 5, branch=hostile)
    proc = act(repo, "pull_request_target", payload, "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "train experiments/tiny.yaml" in out and "import and report experiments/tiny.yaml" in out
    (run,) = team_runs(store)
    client = MlflowClient(store)
    spec = ExperimentSpec.model_validate(yaml.safe_load(text))
    assert run.info.status == "FINISHED"
    # The train job wrote its own store; the team's run came through the bundle, lineage set on import.
    assert run.data.tags["flowops.imported"] == f"run bundle of PR #5 at {head}"
    assert run.data.tags["flowops.spec_sha256"] == spec.sha256()
    assert run.data.tags["flowops.pr_number"] == "5"
    assert run.data.tags["flowops.git_commit"] == head
    # The report reaches the job summary; on GitHub it is also the sticky comment.
    summary = job_summary(proc.stdout)
    assert "<!-- flowops-report: experiments/tiny.yaml -->" in summary
    assert "Merging this will move **`production`** from unset to the new version." in summary
    assert "No model holds any alias yet" in summary
    assert store.removeprefix("sqlite:///") not in summary  # no tracking address in what is published
    assert hostile not in summary and "feature&lt;!--hide-the-rest" in summary  # the branch is text
    assert f"computed by the PR's code at commit `{head[:12]}`" in summary  # the numbers are claims
    assert "model code: " in out and "equal to git" in out  # the model's code was checked against git

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

    # a second PR changes the experiment: its report runs with the base (the first merge) checked out,
    # where the file says something else
    changed = experiment_text(synth_root, "act-tiny", seed=11)
    base2, head2 = repo.pr("change", {"experiments/tiny.yaml": changed})
    proc = act(repo, "pull_request_target", pr_payload(base2, head2, 9), "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    summary = job_summary(proc.stdout)
    assert "<!-- flowops-report: experiments/tiny.yaml -->" in summary
    assert "spec sha256 differs" not in out
    assert "### What merging will do" in summary and "production" in summary
    runs = {r.data.tags["flowops.git_commit"]: r for r in team_runs(store)}
    assert set(runs) == {head, head2} and runs[head2].data.tags["flowops.pr_number"] == "9"


def test_invalid_experiment_is_annotated_on_its_line(setup, synth_root, stand_in):
    repo, store, cache = setup
    bad = experiment_text(synth_root, "broken").replace("epochs: 2", "epochs: 0")
    base, head = repo.pr("bad", {"experiments/broken.yaml": bad})
    line = bad.splitlines().index("epochs: 0") + 1
    proc = act(repo, "pull_request", pr_payload(base, head, 6), "experiment.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        f"::error file=experiments/broken.yaml,line={line},title=flowops validate::epochs: must be >= 1 (got 0)" in out
    )
    assert f"experiments/broken.yaml:{line}: epochs: must be >= 1 (got 0)" in out
    assert team_runs(store) == []


def test_fork_trains_only_the_commit_a_maintainer_approved(setup, synth_root, stand_in):
    repo, store, cache = setup
    files = {
        "experiments/one.yaml": experiment_text(synth_root, "fork-one"),
        "experiments/two.yaml": experiment_text(synth_root, "fork-two", seed=7),
    }
    base, head = repo.pr("fork", files)

    # opened: nothing trains; the contributor is told what a maintainer must approve
    proc = act(repo, "pull_request_target", pr_payload(base, head, 7, fork=True), "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "train experiments/" not in out
    assert f"fork PR: training waits for a maintainer to approve commit {head} with the label safe-to-train" in out
    assert f"A maintainer reviews commit `{head}`" in job_summary(proc.stdout)
    assert team_runs(store) == []

    github_comments(repo, [approval_comment(head)])  # what the notify job posted on GitHub

    # a label other than safe-to-train approves nothing
    other = pr_payload(base, head, 7, fork=True, labels=["retrain"], action="labeled", label="retrain")
    proc = act(repo, "pull_request_target", other, "train.yml", stand_in, store, cache)
    assert proc.returncode == 0 and "train experiments/" not in proc.stdout + proc.stderr

    # the maintainer adds safe-to-train: both experiments train (matrix), at exactly that commit
    approve = pr_payload(base, head, 7, fork=True, labels=["safe-to-train"], action="labeled", label="safe-to-train")
    proc = act(repo, "pull_request_target", approve, "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    runs = team_runs(store)
    assert sorted(r.data.tags["flowops.experiment_file"] for r in runs) == [
        "experiments/one.yaml",
        "experiments/two.yaml",
    ]
    assert {r.data.tags["flowops.git_commit"] for r in runs} == {head}
    assert {r.data.tags["flowops.imported"] for r in runs} == {f"run bundle of PR #7 at {head}"}

    # a push after the approval: the label is still on the PR, but nothing trains until re-approved
    repo.git("checkout", "-q", "fork")
    (repo.path / "experiments" / "one.yaml").write_text(experiment_text(synth_root, "fork-one", seed=3))
    pushed = repo.commit("a new push")
    sync = pr_payload(base, pushed, 7, fork=True, labels=["safe-to-train"], action="synchronize")
    proc = act(repo, "pull_request_target", sync, "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "train experiments/" not in out
    assert "withdraw a fork's approval on a new push" in out  # the label comes off
    assert f"approve commit {pushed}" in out
    assert len(team_runs(store)) == 2

    # the maintainer read the comment naming the old head and labels again: the head moved, nothing trains
    again = pr_payload(base, pushed, 7, fork=True, labels=["safe-to-train"], action="labeled", label="safe-to-train")
    proc = act(repo, "pull_request_target", again, "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "train experiments/" not in out
    assert f"fork PR: the label approved {head}, the head is {pushed}: nothing trains; approve {pushed} again" in out
    assert "ask a maintainer to approve" in out  # the waiting comment is updated to name the new head
    assert len(team_runs(store)) == 2


def test_a_pr_whose_code_forges_its_lineage_gets_nothing_imported(setup, synth_root, stand_in):
    """The train job runs the PR's code (the MLproject puts its src/ first): here it lies about its commit."""
    repo, store, cache = setup
    lineage = (repo.path / "src" / "flowops" / "gitops" / "lineage.py").read_text()
    forged = lineage.replace('"git_commit": commit or "unknown",', '"git_commit": "0" * 40,')
    assert forged != lineage
    base, head = repo.pr(
        "forger",
        {"experiments/forged.yaml": experiment_text(synth_root, "forged"), "src/flowops/gitops/lineage.py": forged},
    )
    proc = act(repo, "pull_request_target", pr_payload(base, head, 8), "train.yml", stand_in, store, cache)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = out.splitlines()
    assert any("train experiments/forged.yaml" in line and "Job succeeded" in line for line in lines)  # it trained
    assert f"tags.flowops.git_commit: '{'0' * 40}' differs from '{head}' (lineage comes from the import stage" in out
    assert team_runs(store) == []


def test_pinned_stand_ins_match_the_workflows():
    assert REMOTE and all(PINNED[a] == sha for a, sha in REMOTE.items())
    assert set(STAND_INS) == set(REMOTE)
