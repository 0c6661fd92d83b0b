"""GitHub's rules for PR code, encoded: act cannot show them (it hands secrets to fork events and
always runs the local copy of a workflow), so the workflow files are checked against them here.

- `pull_request` (and its review events, and merge queues) run the workflow file *as the PR has
  it*: a PR can rewrite every `if:` there. Such a workflow must hold nothing worth taking and
  never reach a self-hosted runner.
- `pull_request_target` and `workflow_run` run the base branch's file: gates belong there. A job
  in them that checks out the PR's code (a checkout with `ref:`) is PR code: no secret, no write
  permission, no environment, and the commit it checks out is the one the gate approved
  (`pull_request.head.sha` of the event), never a branch name.
- A local action (`uses: ./.github/actions/x`) resolves from whatever the job checked out into the
  workspace root, on GitHub as under act: after a checkout of the PR into the root it is the PR's
  copy, running outside the code identity. So the PR goes into a folder of its own (`path:`) and
  the root stays the base; a composite action checks out nothing and calls no local action itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO
from .conftest import WORKFLOWS, load

PR_DEFINED = {"pull_request", "pull_request_review", "pull_request_review_comment", "merge_group"}
APPROVED_SHA = "${{ needs.gate.outputs.sha }}"
TRAIN = REPO / ".github" / "workflows" / "train.yml"


def triggers(workflow: dict) -> set[str]:
    on = workflow["on"]
    return {on} if isinstance(on, str) else set(on)


def checkouts(job: dict) -> list[dict]:
    return [s for s in job.get("steps", []) if s.get("uses", "").startswith("actions/checkout@")]


def runs_pr_code(workflow: dict, job: dict) -> bool:
    """Does this job execute code the PR controls?"""
    if triggers(workflow) & PR_DEFINED:
        return True  # the workflow file itself is the PR's
    return any("ref" in s.get("with", {}) for s in checkouts(job))


def jobs() -> list[tuple[str, str, dict, dict]]:
    return [(p.name, job_id, load(p), job) for p in WORKFLOWS for job_id, job in load(p)["jobs"].items()]


def test_the_rules_see_the_jobs_that_run_pr_code():
    pr_code = {(name, job_id) for name, job_id, wf, job in jobs() if runs_pr_code(wf, job)}
    assert (
        ("train.yml", "train") in pr_code
        and ("experiment.yml", "validate") in pr_code
        and ("ci.yml", "test") in pr_code
    )
    assert ("train.yml", "import") not in pr_code and ("train.yml", "gate") not in pr_code


def test_no_self_hosted_runner_is_reachable_from_a_workflow_the_pr_defines():
    for name, job_id, workflow, job in jobs():
        if triggers(workflow) & PR_DEFINED:
            labels = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
            assert "self-hosted" not in labels, f"{name}:{job_id}: the PR's copy of this file decides who runs here"


def test_a_job_that_runs_pr_code_holds_no_secret_and_no_write_permission():
    for name, job_id, workflow, job in jobs():
        if not runs_pr_code(workflow, job):
            continue
        text = yaml.safe_dump(job)
        assert "secrets." not in text, f"{name}:{job_id}: PR code next to a secret"
        assert "github.token" not in text and "GITHUB_TOKEN" not in text, f"{name}:{job_id}"
        assert "write" not in set(job.get("permissions", {}).values()), f"{name}:{job_id}: {job['permissions']}"
        assert "environment" not in job, f"{name}:{job_id}: an environment's secrets would reach PR code"


def test_secrets_are_given_to_steps_never_to_whole_jobs_or_workflows():
    for path in WORKFLOWS:
        workflow = load(path)
        assert "secrets." not in yaml.safe_dump(workflow.get("env", {})), path.name
        for job_id, job in workflow["jobs"].items():
            assert "secrets." not in yaml.safe_dump(job.get("env", {})), f"{path.name}:{job_id}: job-level secret"


def test_every_checkout_of_pr_code_is_the_approved_commit():
    for name, job_id, workflow, job in jobs():
        for step in checkouts(job):
            if "ref" in step.get("with", {}):
                assert "pull_request_target" in triggers(workflow), f"{name}:{job_id}"
                assert step["with"]["ref"] == APPROVED_SHA, f"{name}:{job_id}: checks out {step['with']['ref']}"
            assert step["with"]["persist-credentials"] is False, f"{name}:{job_id}"
    for path in WORKFLOWS:  # a branch name moves after approval; only the event's SHA is what was read
        assert not re.search(r"head_ref|head\.ref\b", path.read_text()), path.name
    gate = load(TRAIN)["jobs"]["gate"]
    (decide,) = [s for s in gate["steps"] if s.get("id") == "gate"]
    assert decide["env"]["HEAD"] == "${{ github.event.pull_request.head.sha }}"
    assert 'echo "sha=$HEAD"' in decide["run"]
    assert gate["outputs"]["sha"] == "${{ steps.gate.outputs.sha }}"


def test_trusted_jobs_run_only_base_branch_code():
    """Jobs holding a secret or a write permission check out nothing but the base (no `ref`)."""
    for name, job_id, workflow, job in jobs():
        powerful = "secrets." in yaml.safe_dump(job) or "write" in set(job.get("permissions", {}).values())
        if powerful:
            assert not runs_pr_code(workflow, job), f"{name}:{job_id}"
            local = [s["uses"] for s in job.get("steps", []) if s.get("uses", "").startswith("./")]
            assert not local or checkouts(job), f"{name}:{job_id}: a local action with no checkout of the base"


def local_actions_from_pr_code(job: dict) -> list[str]:
    """The local actions a job would take from PR code: those after a checkout of a `ref` into the
    workspace root (no `path:`, or the root itself)."""
    root_is_pr, found = False, []
    for step in job.get("steps", []):
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            args = step.get("with", {})
            if str(args.get("path", ".")).strip("./") == "":
                root_is_pr = "ref" in args or "repository" in args
        elif uses.startswith("./") and root_is_pr:
            found.append(uses)
    return found


def test_local_actions_always_resolve_from_the_base_branch():
    for name, job_id, workflow, job in jobs():
        if triggers(workflow) & {"pull_request_target", "workflow_run"}:
            assert local_actions_from_pr_code(job) == [], f"{name}:{job_id}: a local action from the PR's checkout"
    train = load(TRAIN)["jobs"]["train"]
    (pr,) = [s for s in checkouts(train) if "ref" in s["with"]]
    assert pr["with"]["path"] == "pr"
    steps = [s for s in train["steps"] if "run" in s and "flowops" in s["run"]]
    assert steps and all(s.get("working-directory") == "pr" for s in steps)  # training runs in the PR's folder


def test_the_local_action_rule_sees_a_pr_checkout_in_the_root():
    """The train job before #29: the PR's commit in the root, then its own copy of the setup action."""
    old = {
        "steps": [
            {"uses": "actions/checkout@x", "with": {"ref": APPROVED_SHA, "persist-credentials": False}},
            {"uses": "./.github/actions/setup-flowops", "with": {"extras": "gpu"}},
        ]
    }
    assert local_actions_from_pr_code(old) == ["./.github/actions/setup-flowops"]
    base_after = {"steps": [*old["steps"][:1], {"uses": "actions/checkout@x", "with": {}}, old["steps"][1]]}
    assert local_actions_from_pr_code(base_after) == []


@pytest.mark.parametrize(
    "action", sorted((REPO / ".github" / "actions").glob("*/action.yml")), ids=lambda p: p.parent.name
)
def test_composite_actions_check_out_nothing_and_call_no_local_action(action):
    steps = yaml.safe_load(action.read_text())["runs"]["steps"]
    for step in steps:
        uses = step.get("uses", "")
        assert not uses.startswith(("./", "actions/checkout@")), f"{action}: {uses}"


def test_training_and_gating_live_in_a_file_github_takes_from_the_base_branch():
    workflow = load(TRAIN)
    assert triggers(workflow) == {"pull_request_target"}
    assert load(TRAIN)["on"]["pull_request_target"]["types"] == ["opened", "synchronize", "reopened", "labeled"]
    experiment = load(REPO / ".github" / "workflows" / "experiment.yml")
    assert (
        "train" not in experiment["jobs"]
        and "self-hosted" not in (REPO / ".github/workflows/experiment.yml").read_text()
    )


def test_no_tool_is_installed_at_an_unpinned_version():
    for path in [*WORKFLOWS, *sorted((REPO / ".github" / "actions").glob("*/action.yml"))]:
        text = path.read_text()
        assert "setup-cml" not in text and "cml " not in text, path.name  # installed CML `latest` at run time
        assert not re.search(r"@(main|master|latest)\b|version: *[\"']?latest", text), path.name


def test_hosted_jobs_install_flowops_fresh_and_only_self_hosted_ones_use_a_prepared_venv():
    for name, job_id, _, job in jobs():
        for step in job.get("steps", []):
            venv = step.get("with", {}).get("venv")
            if venv is None:
                continue
            if job["runs-on"] == "ubuntu-latest":
                assert venv == "${{ env.ACT && vars.FLOWOPS_VENV || '' }}", f"{name}:{job_id}"
            else:
                assert venv == "${{ vars.FLOWOPS_VENV }}", f"{name}:{job_id}"


FAKE_GH = """#!/bin/sh
# stand-in for the GitHub CLI: `gh api .../comments` answers with the comments in $GH_COMMENTS
case "$*" in *"/comments"*) cat "${GH_COMMENTS:-/dev/null}" ;; *) echo "fake gh: $*" >&2; exit 1 ;; esac
"""


def fake_gh(folder: Path) -> Path:
    """A folder holding a stand-in `gh` (see FAKE_GH), for PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gh").write_text(FAKE_GH)
    (folder / "gh").chmod(0o755)
    return folder


def approval_comment(sha: str, login: str = "github-actions[bot]") -> dict:
    """The waiting comment the notify job posts (marker first, then the commit it names)."""
    body = f"<!-- flowops-approval -->\n<!-- flowops-approval-sha: {sha} -->\n**flowops:** ..."
    return {"user": {"login": login, "type": "Bot" if login.endswith("[bot]") else "User"}, "body": body}


def gate_decision(fork: bool, action: str, label: str, comments: list[dict] | None = None) -> dict[str, str]:
    """Run the gate step's own script, as the workflow has it, with the event's values and the PR's comments."""
    (decide,) = [s for s in load(TRAIN)["jobs"]["gate"]["steps"] if s.get("id") == "gate"]
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:  # one per call: the cases run in parallel
        out = Path(tmp) / "output"
        out.touch()
        (Path(tmp) / "comments.json").write_text(json.dumps(comments if comments is not None else []))
        env = {
            "PATH": f"{fake_gh(Path(tmp) / 'bin')}{os.pathsep}{os.environ['PATH']}",
            "ACTION": action,
            "LABEL": label,
            "FORK": "true" if fork else "false",
            "HEAD": "a" * 40,
            "PR": "7",
            "REPO": "acme/flowops",
            "GH_COMMENTS": str(Path(tmp) / "comments.json"),
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": os.devnull,
        }
        subprocess.run(["bash", "-e", "-c", decide["run"]], env=env, check=True, capture_output=True)
        return dict(line.split("=", 1) for line in out.read_text().splitlines())


@pytest.mark.parametrize("fork", [False, True], ids=["same-repo", "fork"])
@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "labeled", "edited"])
@pytest.mark.parametrize("label", ["", "safe-to-train", "retrain", "other"])
def test_the_gate_approves_forks_only_by_the_label_event_itself(fork, action, label):
    if fork:
        expected = action == "labeled" and label == "safe-to-train"
    else:
        expected = action in ("opened", "synchronize", "reopened") or (action == "labeled" and label == "retrain")
    decided = gate_decision(fork, action, label, [approval_comment("a" * 40)])
    assert decided["approved"] == ("true" if expected else "false")
    assert decided["moved"] == "false" and decided["sha"] == "a" * 40


@pytest.mark.parametrize(
    ("comments", "why"),
    [
        ([approval_comment("b" * 40)], "the head moved after the comment named b..."),
        ([], "no waiting comment names a commit"),
        ([approval_comment("a" * 40, login="stranger")], "a comment by anyone but the bot names nothing"),
        ([approval_comment("b" * 40), approval_comment("a" * 40)], "the bot's one comment is the first"),
    ],
)
def test_a_forks_label_trains_only_the_commit_the_waiting_comment_named(comments, why):
    decided = gate_decision(True, "labeled", "safe-to-train", comments)
    assert (decided["approved"], decided["moved"]) == ("false", "true"), why
