"""A third-party template plugs into the engine the way the segmentation template does: through
entry points, with nothing of it imported by name (#34). The tiny one here is installed as pip
installs a distribution (a `.dist-info` with `entry_points.txt` on the path) for one process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .conftest import flowops

TINY = '''
import types

import click

from flowops import yamlfile
from flowops.errors import Problem, ProblemsError
from flowops.spec.template import SchemaPlugin
from flowops.spec.vocabulary import Vocabulary


@click.command("tiny-hello")
def hello():
    """Say which template answered."""
    click.echo("tiny template here")


COMMANDS = [hello]
VOCABULARY = Vocabulary(directions={"val_auc": "max"}, bounds={"val_auc": (0.0, 1.0)}, compared=("val_auc",))


def load(path, text=None):
    doc = yamlfile.load(path, text)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("trees"), int):
        raise ProblemsError([Problem(str(path), "a whole number of trees is required", 1, "trees")])
    return types.SimpleNamespace(name=str(doc.data.get("name", "")), trees=doc.data["trees"])


SCHEMA = SchemaPlugin(
    load=load,
    from_params=lambda params: None,
    to_params=lambda spec: {"trees": str(spec.trees)},
    parameters=frozenset({"trees"}),
    extra_parameters=frozenset(),
    json_schema=dict,
    experiment_problems=lambda path, spec, policy: [],
    policy_problems=lambda path, policy, specs: [],
)
'''

ENTRY_POINTS = """
[flowops.commands]
tiny = tinytemplate:COMMANDS

[flowops.metrics]
tiny = tinytemplate:VOCABULARY

[flowops.schema]
tiny = tinytemplate:SCHEMA
"""


def install_tiny(site: Path) -> None:
    site.mkdir(parents=True)
    (site / "tinytemplate.py").write_text(TINY)
    info = site / "tinytemplate-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinytemplate\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def test_a_third_party_template_adds_a_command_and_its_metrics(tmp_path):
    repo = tmp_path / "tabular"
    assert flowops("init", "--template", "tabular", str(repo)).returncode == 0
    policy = repo / "registry_policy.yaml"
    policy.write_text(policy.read_text().replace("primary_metric: val_accuracy", "primary_metric: val_auc"))
    assert "primary_metric: val_auc" in policy.read_text()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)

    without = flowops("validate", cwd=repo)  # the engine knows no val_auc of its own
    assert without.returncode == 1 and "unknown metric 'val_auc'" in without.stdout + without.stderr
    assert "tiny-hello" not in flowops("--help").stdout

    install_tiny(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    assert "tiny-hello" in flowops("--help", env=env).stdout
    said = flowops("tiny-hello", env=env)
    assert said.returncode == 0 and said.stdout == "tiny template here\n"
    checked = flowops("validate", cwd=repo, env=env)  # its vocabulary names val_auc's direction
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_third_party_templates_schema_reads_the_experiment_files(tmp_path):
    """flowops.yaml names the schema (`schema: tiny`); its plug-in reads the experiment files, and
    names only what is installed: without the template the file says which schemas are."""
    repo = tmp_path / "forest"
    (repo / "experiments").mkdir(parents=True)
    (repo / "flowops.yaml").write_text("schema: tiny\n")
    (repo / "experiments" / "a.yaml").write_text("name: a\ntrees: 3\n")
    (repo / "experiments" / "b.yaml").write_text("name: b\ntrees: many\n")
    install_tiny(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    checked = flowops("validate", "experiments/a.yaml", cwd=repo, env=env)
    assert checked.returncode == 0 and checked.stdout.strip() == "ok: 1 file(s) valid (1 experiment(s))", checked.stderr
    bad = flowops("validate", cwd=repo, env=env)
    assert (
        bad.returncode == 1
        and "experiments/b.yaml:1: trees: a whole number of trees is required" in bad.stdout + bad.stderr
    )
    missing = flowops("validate", cwd=repo)
    assert missing.returncode == 1
    assert (
        "flowops.yaml:1: schema: 'tiny' is neither mlproject nor an installed template's schema; known here: "
        "mlproject, segmentation" in missing.stdout + missing.stderr
    )


def test_a_segmentation_repository_without_the_template_says_so_in_one_line(tmp_path):
    """A repository without flowops.yaml is the segmentation template's: with the template not
    installed, validate stops with one line that says what is missing and what to do."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "a.yaml").write_text("name: a\ncategories: [person]\n")
    masked = Path(__file__).parent / "without_segmentation"
    done = flowops("validate", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(masked)})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "the segmentation template is not installed (no entry point 'segmentation' in the group "
        "flowops.schema): install it, or declare `schema: mlproject` in flowops.yaml (docs/own-project.md)"
    ]
    assert flowops("validate", cwd=tmp_path).returncode == 0  # installed: the same file is valid
