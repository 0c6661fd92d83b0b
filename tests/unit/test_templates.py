"""The templates `flowops init` writes: the segmentation one is this repository's own project files."""

from __future__ import annotations

import pytest

from flowops.cli.init import TEMPLATES

from ..conftest import REPO

TEMPLATE_ROOT = REPO / "src" / "flowops" / "templates"
SHARED = ["MLproject", "conda.yaml", "registry_policy.yaml", "experiments/baseline.yaml", "experiments/schema.json"]


@pytest.mark.parametrize("name", SHARED)
def test_the_segmentation_template_is_this_repositorys_project(name):
    """One project, two places: the template must not drift from the files this repository trains with."""
    assert (TEMPLATE_ROOT / "segmentation" / name).read_text() == (REPO / name).read_text(), (
        f"copy {name} to src/flowops/templates/segmentation/{name}"
    )


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_has_what_a_repository_needs(template):
    folder = TEMPLATE_ROOT / template
    for name in ("MLproject", "registry_policy.yaml", "README.md", ".gitignore"):
        assert (folder / name).is_file(), f"{template}: {name} is missing"
    assert sorted(p.suffix for p in (folder / "experiments").iterdir() if p.suffix == ".yaml")


GITHUB = TEMPLATE_ROOT / "github"
SAME_AS_OURS = [
    "workflows/experiment.yml",
    "workflows/train.yml",
    "workflows/promote.yml",
    "actions/sticky-comment/action.yml",
]


@pytest.mark.parametrize("name", SAME_AS_OURS)
def test_a_new_repository_gets_the_workflows_this_one_runs(name):
    """The trust model is tested on this repository's workflows (tests/workflows): a template gets exactly
    them, only installing flowops differently (a pinned release, not this checkout)."""
    assert (GITHUB / name).read_text() == (REPO / ".github" / name).read_text(), (
        f"copy .github/{name} to src/flowops/templates/github/{name}"
    )


def test_the_templates_setup_action_installs_a_pinned_flowops_and_the_projects_requirements():
    text = (GITHUB / "actions" / "setup-flowops" / "action.yml").read_text()
    ours = (REPO / ".github" / "actions" / "setup-flowops" / "action.yml").read_text()
    assert "inputs:\n  extras:" in text and "  venv:" in text and ".github/flowops-requirement.txt" in text
    assert '-r "$PROJECT/requirements.txt"' in text and 'pip install --quiet ".${EXTRAS' in ours


@pytest.mark.parametrize(
    ("extras", "requirements", "project", "installed"),
    [
        ("", False, ".", "-m pip install --quiet flowops==1.2.3"),
        ("gpu", False, ".", "-m pip install --quiet flowops[gpu]==1.2.3"),
        ("gpu", True, ".", "-m pip install --quiet flowops[tracking]==1.2.3 -r ./requirements.txt"),
        ("", True, ".", "-m pip install --quiet flowops==1.2.3"),  # validate: the light core only
        # the train job: the PR's requirements (pr/), flowops pinned by the base's file (the root)
        ("gpu", True, "pr", "-m pip install --quiet flowops[tracking]==1.2.3 -r pr/requirements.txt"),
    ],
)
def test_the_templates_setup_action_installs_what_the_job_needs(tmp_path, extras, requirements, project, installed):
    """The action's own script, run with a stand-in python that records what pip would install."""
    import os
    import subprocess

    import yaml

    (step,) = yaml.safe_load((GITHUB / "actions" / "setup-flowops" / "action.yml").read_text())["runs"]["steps"]
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi\n'
        'echo "$@" > "$LOG"\n'
    )
    fake.chmod(0o755)
    repo = tmp_path / "repo"
    (repo / ".github").mkdir(parents=True)
    (repo / ".github" / "flowops-requirement.txt").write_text("# pinned\nflowops==1.2.3\n")
    if requirements:
        (repo / project).mkdir(exist_ok=True)
        (repo / project / "requirements.txt").write_text("scikit-learn\n")
    env = {
        "PATH": f"{fake.parent}:/usr/bin:/bin",
        "EXTRAS": extras,
        "PREPARED": "",
        "PROJECT": project,
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_PATH": str(tmp_path / "github_path"),
        "LOG": str(tmp_path / "log"),
    }
    os.makedirs(env["RUNNER_TEMP"])
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=env, check=True)
    assert (tmp_path / "log").read_text().strip() == installed
    assert (tmp_path / "github_path").read_text() == f"{tmp_path / 'runner' / 'flowops-venv' / 'bin'}\n"


def test_validate_warns_when_no_candidate_could_ever_be_compared(tmp_path):
    """#30: a policy with `improve` in a project whose code never sets flowops.eval_set and that names
    no evaluate entry point: the first model promoted would keep production for good. The tabular
    template does both; without either, validate says so (and still passes)."""
    import shutil

    from flowops.spec.validate import comparison_warnings

    repo = tmp_path / "tabular"
    shutil.copytree(TEMPLATE_ROOT / "tabular", repo)
    assert comparison_warnings(repo) == []
    config = repo / "flowops.yaml"
    config.write_text("\n".join(line for line in config.read_text().splitlines() if not line.startswith("evaluate:")))
    assert comparison_warnings(repo) == []  # train.py still logs the tag
    for name in ("train.py", "evaluate.py"):
        (repo / name).write_text((repo / name).read_text().replace("flowops.eval_set", "my.eval_set"))
    (warning,) = comparison_warnings(repo)
    assert str(warning) == (
        "registry_policy.yaml: targets.production compares with the holder, but the project's code never sets the "
        "tag flowops.eval_set and flowops.yaml names no evaluate entry point: no candidate can be compared, so "
        "the first model promoted keeps the alias; log the tag or add `evaluate:` (docs/own-project.md)"
    )
