"""Static checks of the workflow files: schema, security audit, and that they call real commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from flowops.cli import cli

from ..conftest import REPO
from .conftest import PINNED, WORKFLOWS, load, pinned_actions

BIN = Path(sys.executable).parent


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


ACTIONS = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
TEMPLATE_SETUP = REPO / "src" / "flowops" / "templates" / "github" / "actions" / "setup-flowops" / "action.yml"


def test_the_workflows_exist():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "experiment.yml", "promote.yml", "release.yml", "train.yml"]


def test_zizmor_finds_nothing_of_medium_severity_or_higher():
    proc = subprocess.run(
        [
            str(BIN / "zizmor"),
            "--offline",
            "--persona",
            "auditor",
            "--min-severity",
            "medium",
            "--no-progress",
            ".github/workflows",
            ".github/actions",
            str(TEMPLATE_SETUP.parent),  # what flowops init writes in place of this repository's own
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


@pytest.mark.parametrize(
    "path",
    [*WORKFLOWS, *ACTIONS, TEMPLATE_SETUP],
    ids=lambda p: (
        (("template-" if "templates" in p.parts else "") + p.parent.name) if p.name == "action.yml" else p.name
    ),
)
def test_github_schema_accepts_the_file(path):
    schema = "vendor.github-actions" if path.name == "action.yml" else "vendor.github-workflows"
    proc = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def flowops_calls() -> list[tuple[str, list[str]]]:
    calls = []
    for path in WORKFLOWS:
        for _, step in steps(load(path)):
            for line in step.get("run", "").replace("\\\n", " ").splitlines():  # continued lines joined
                for match in re.finditer(r"(?:^|[;&|]\s*)flowops\s+([^;&|]+)", line.strip()):
                    calls.append((path.name, shlex.split(match.group(1).replace("$(", "").replace(")", ""))))
    return calls


def test_every_flowops_call_names_a_real_command_and_options():
    calls = flowops_calls()
    assert {c[1][0] for c in calls} >= {"validate", "changed", "train", "bundle", "report", "promote"}
    for name, argv in calls:
        command = cli.commands.get(argv[0])
        if isinstance(command, click.Group):  # flowops bundle export|import
            command, argv = command.commands.get(argv[1]), argv[1:]
        assert isinstance(command, click.Command), f"{name}: flowops {argv[0]} does not exist"
        options = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        for word in argv[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{name}: flowops {argv[0]} has no option {word}"


def remote_uses(paths: list[Path]) -> list[tuple[str, str]]:
    """(file name, uses) of every step that uses a remote action, in workflows and composite actions."""
    found = []
    for path in paths:
        data = load(path)
        jobs = data.get("jobs", {}).values() if "jobs" in data else [data.get("runs", {})]
        for job in jobs:
            found += [(path.name, s["uses"]) for s in job.get("steps", []) if not s.get("uses", "./").startswith("./")]
    return found


def unpinned(uses: list[tuple[str, str]], pinned: dict[str, str]) -> list[str]:
    """Each `uses:` not pinned to the commit SHA the list gives for its action."""
    bad = []
    for name, use in uses:
        action, _, ref = use.partition("@")
        if not re.fullmatch(r"[0-9a-f]{40}", ref) or pinned.get(action) != ref:
            bad.append(f"{name}: {use} is not pinned to the SHA in .github/pinned-actions.md")
    return bad


def test_every_remote_action_is_pinned_to_a_listed_sha():
    uses = remote_uses([*WORKFLOWS, *ACTIONS])
    assert {use.partition("@")[0] for _, use in uses} >= {"actions/checkout", "actions/setup-python"}
    assert unpinned(uses, PINNED) == []


def test_the_pin_check_fails_on_an_unpinned_or_unlisted_action(tmp_path):
    assert unpinned([("x.yml", "actions/checkout@v7")], PINNED) == [
        "x.yml: actions/checkout@v7 is not pinned to the SHA in .github/pinned-actions.md"
    ]
    assert len(unpinned([("x.yml", "someone/else@" + "a" * 40)], PINNED)) == 1
    empty = tmp_path / "pinned-actions.md"
    empty.write_text("# no table\n")
    with pytest.raises(AssertionError, match="no pinned actions listed"):
        pinned_actions(empty)


def test_permissions_are_read_only_by_default_and_widened_per_job():
    for path in WORKFLOWS:
        workflow = load(path)
        assert workflow["permissions"] == {}, path.name
        for job_id, job in workflow["jobs"].items():
            assert "permissions" in job and "timeout-minutes" in job, f"{path.name}:{job_id}"
    train = load(REPO / ".github/workflows/train.yml")["jobs"]
    assert train["train"]["permissions"] == {"contents": "read"}
    assert train["train"]["runs-on"] == ["self-hosted", "gpu"]
    assert train["train"]["concurrency"]["cancel-in-progress"] is True
    assert train["import"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert train["import"]["environment"] == "training"
    promote = load(REPO / ".github/workflows/promote.yml")
    assert promote["concurrency"] == {"group": "promote", "cancel-in-progress": False}
    assert promote["jobs"]["promote"]["environment"] == "production"


def test_no_expressions_inside_run_scripts():
    for path in WORKFLOWS:
        for job_id, step in steps(load(path)):
            assert "${{" not in step.get("run", ""), (
                f"{path.name}:{job_id}: pass values through env:, not ${{{{ }}}} in run:"
            )


def test_network_steps_are_skipped_under_act():
    """act runs offline: setup-python and every call of GitHub's API (gh, the sticky comment) are skipped."""
    for path in WORKFLOWS:
        if path.name in ("ci.yml", "release.yml"):  # never run under act
            continue
        for _, step in steps(load(path)):
            needs_network = any(a in step.get("uses", "") for a in ("setup-python", "sticky-comment")) or re.search(
                r"(^|\s)gh ", step.get("run", "")
            )
            if needs_network:
                assert "!env.ACT" in step.get("if", ""), f"{path.name}: {step}"


def test_promote_checks_out_the_whole_history():
    """promote replays every merge on main: a shallow checkout would see one commit."""
    steps_ = [step for _, step in steps(load(REPO / ".github" / "workflows" / "promote.yml"))]
    checkout = next(step for step in steps_ if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0


def test_a_release_publishes_the_checked_files_with_trusted_publishing_only():
    """#31: tags v* build the sdist and wheel once, `twine check` them, check the tag is the version and that
    the wheel installs a working `flowops`, then publish those files with OIDC (no stored token)."""
    release = load(REPO / ".github" / "workflows" / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    assert build["permissions"] == {"contents": "read"}
    script = next(s["run"] for s in build["steps"] if "run" in s)
    for needed in ("python -m build", "twine check --strict dist/*", '"$TAG" != "v$version"', "flowops --version"):
        assert needed in script, needed
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    assert publish["environment"]["url"] == "https://pypi.org/project/flowops-gitops/"
    assert [s["uses"].partition("@")[0] for s in publish["steps"]] == [
        "actions/download-artifact",
        "pypa/gh-action-pypi-publish",
    ]
    text = (REPO / ".github" / "workflows" / "release.yml").read_text()
    assert "secrets." not in text and "password" not in text


def test_a_pr_that_changes_the_code_trains_the_holders_experiments_by_the_holders_jobs_plan():
    """#31: the gate (no credential) knows what the PR changes; the holders job (the trainer's read of
    the registry) adds the holders' experiments when the code changed; train and import take its plan,
    or the gate's when it failed, so a registry outage still trains what the PR touched."""
    jobs = load(REPO / ".github" / "workflows" / "train.yml")["jobs"]
    gate, holders = jobs["gate"], jobs["holders"]
    assert gate["outputs"]["stale"] == "${{ steps.changed.outputs.stale }}"
    assert gate["outputs"]["code_changed"] == "${{ steps.changed.outputs.code_changed }}"
    assert "needs.gate.outputs.code_changed == 'true'" in holders["if"]
    assert holders["outputs"] == {
        "experiments": "${{ steps.plan.outputs.experiments }}",
        "matrix": "${{ steps.plan.outputs.matrix }}",
    }
    names = [s.get("id") or s.get("name") or s.get("uses") for s in holders["steps"]]
    assert names.index("plan") < names.index("export the holders' models")
    (plan,) = [s for s in holders["steps"] if s.get("id") == "plan"]
    assert plan["run"].startswith("flowops holders plan ") and plan["env"]["STALE"] == "${{ needs.gate.outputs.stale }}"
    for name in ("train", "import"):
        job = jobs[name]
        assert "holders" in job["needs"]
        assert job["strategy"]["matrix"] == "${{ fromJSON(needs.holders.outputs.matrix || needs.gate.outputs.matrix) }}"
        assert "(needs.holders.outputs.experiments || needs.gate.outputs.experiments) != '[]'" in job["if"]
