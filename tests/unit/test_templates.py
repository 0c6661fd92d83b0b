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
    assert 'requirements --project "$PROJECT"' in text and 'pip install --quiet ".${EXTRAS' in ours


PINNED = "-m pip install --quiet --no-deps -r .github/flowops-requirement.txt"


OWN = "-m pip install --quiet -r {runner}/project-requirements.txt"


@pytest.mark.parametrize(
    ("extras", "own", "project", "installed"),
    [
        ("", "", ".", ["-m pip install --quiet flowops-gitops"]),
        ("gpu", "", ".", ["-m pip install --quiet flowops-gitops[gpu]"]),
        ("gpu", "requirements.txt", ".", ["-m pip install --quiet flowops-gitops[tracking]", OWN]),
        ("", "requirements.txt", ".", ["-m pip install --quiet flowops-gitops"]),  # validate: the light core only
        # the train job: the PR's environment (pr/), flowops pinned by the base's file (the root)
        ("gpu", "requirements.txt", "pr", ["-m pip install --quiet flowops-gitops[tracking]", OWN]),
        # #31: a project of its own with conda.yaml (the MLflow wine example): no TensorFlow
        ("gpu", "flowops.yaml", "pr", ["-m pip install --quiet flowops-gitops[tracking]", OWN]),
    ],
)
def test_the_templates_setup_action_installs_what_the_job_needs(tmp_path, extras, own, project, installed):
    """The action's own script, run with a stand-in python that records what pip would install: first
    the pinned flowops alone (pip checks its commit or hash), then its dependencies by name, then the
    environment a project of its own names (what `flowops requirements` prints)."""
    log = _run_setup_action(tmp_path, extras, own, project, replaced=False)
    assert log == [PINNED, *(line.format(runner=tmp_path / "runner") for line in installed)]
    if OWN in installed:
        assert (tmp_path / "runner" / "project-requirements.txt").read_text() == f"requirements of {project}\n"
    assert (tmp_path / "github_path").read_text() == f"{tmp_path / 'runner' / 'flowops-venv' / 'bin'}\n"


def test_the_templates_setup_action_fails_when_the_dependencies_replace_the_pinned_flowops(tmp_path):
    """A project requirement that resolves to another flowops-gitops (another version, the index's
    file) would silently swap the checked pin for an unchecked one: the job fails instead."""
    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as failed:
        _run_setup_action(tmp_path, "gpu", "requirements.txt", ".", replaced=True)
    assert "replaced the pinned flowops-gitops (1.2.3 null)" in failed.value.stdout
    assert not (tmp_path / "github_path").exists()


def _run_setup_action(tmp_path, extras, own, project, replaced):
    import os
    import subprocess

    import yaml

    (step,) = yaml.safe_load((GITHUB / "actions" / "setup-flowops" / "action.yml").read_text())["runs"]["steps"]
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    # a stand-in python: `-m venv` makes the venv, `-c` says which flowops is installed (another
    # one once the second pip install ran, when `replaced`), `-m pip` is recorded
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; '
        'printf \'#!/bin/sh\\necho "requirements of $3"\\n\' > "$3/bin/flowops"; chmod +x "$3/bin/flowops"; exit 0; fi\n'
        'if [ "$1" = -c ]; then if [ -n "$REPLACED" ] && [ "$(wc -l < "$LOG")" -gt 1 ]; then echo "9.9 null"; '
        'else echo "1.2.3 null"; fi; exit 0; fi\n'
        'echo "$@" >> "$LOG"\n'
    )
    fake.chmod(0o755)
    repo = tmp_path / "repo"
    (repo / ".github").mkdir(parents=True)
    (repo / ".github" / "flowops-requirement.txt").write_text("# pinned\nflowops-gitops @ git+https://x/y@" + "a" * 40)
    if own:
        (repo / project).mkdir(exist_ok=True)
        (repo / project / own).write_text("schema: mlproject\n" if own == "flowops.yaml" else "scikit-learn\n")
    env = {
        "PATH": f"{fake.parent}:/usr/bin:/bin",
        "EXTRAS": extras,
        "PREPARED": "",
        "PROJECT": project,
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_PATH": str(tmp_path / "github_path"),
        "LOG": str(tmp_path / "log"),
        "REPLACED": "1" if replaced else "",
    }
    os.makedirs(env["RUNNER_TEMP"])
    (tmp_path / "log").write_text("")
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return (tmp_path / "log").read_text().splitlines()


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
