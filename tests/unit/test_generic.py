"""Experiments of any MLflow Project: checked against the MLproject entry point's parameters."""

from __future__ import annotations

import pytest

from flowops.errors import ProblemsError
from flowops.spec.generic import entry_point, load_generic
from flowops.spec.project import load_project
from flowops.spec.validate import validate_paths

MLPROJECT = """name: forecast
entry_points:
  main:
    parameters:
      horizon: {type: int, default: 7}
      alpha: {type: float, default: 0.5}
      region: {type: string}
      data: {type: path, default: data/sales.csv}
    command: "python train.py"
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "MLproject").write_text(MLPROJECT)
    (tmp_path / "flowops.yaml").write_text("schema: mlproject\n")
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(repo, name: str, text: str):
    path = repo / "experiments" / name
    path.write_text(text)
    return path.relative_to(repo)


def test_a_good_experiment_fills_defaults_and_has_an_identity(repo):
    point = entry_point(repo)
    one = load_generic(write(repo, "a.yaml", "name: a\ndescription: first\nregion: north\nalpha: 0.7\n"), point)
    assert one.experiment_name == "forecast"  # the MLproject's name by default
    assert one.params == {"horizon": 7, "alpha": 0.7, "region": "north", "data": "data/sales.csv"}
    assert one.mlflow_params() == {"horizon": "7", "alpha": "0.7", "region": "north", "data": "data/sales.csv"}
    # Key order, comments, defaults written out and the description do not change the identity.
    same = load_generic(
        write(repo, "b.yaml", "# same\nalpha: 0.7\nregion: north\nhorizon: 7\nname: a\ndescription: other\n"), point
    )
    assert same.sha256() == one.sha256()
    other = load_generic(write(repo, "c.yaml", "name: a\nregion: north\nalpha: 0.8\n"), point)
    assert other.sha256() != one.sha256()


def test_every_problem_is_located_and_named(repo):
    path = write(repo, "bad.yaml", "name: bad\nhorizn: 3\nalpha: high\nhorizon: 2.5\n")
    _, problems = validate_paths([path])
    assert [str(p) for p in problems] == [
        f"{path}:2: horizn: not a parameter of entry point 'main' (did you mean 'horizon'?); "
        "known: alpha, data, horizon, region",
        f"{path}:3: alpha: must be a number (got 'high')",
        f"{path}:4: horizon: must be a whole number (got 2.5)",
        f"{path}:1: region: required (the MLproject gives no default)",
    ]


def test_without_flowops_yaml_a_repository_is_the_segmentation_project(tmp_path):
    project = load_project(tmp_path)
    assert not project.generic and project.entry_point == "main"


def test_a_bad_project_file_is_located(repo):
    (repo / "flowops.yaml").write_text("schema: mlprojects\nentrypoint: main\n")
    with pytest.raises(ProblemsError) as caught:
        load_project(repo)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "flowops.yaml:1: schema" in text and "flowops.yaml:2: entrypoint" in text


def test_an_unknown_entry_point_is_said(repo):
    (repo / "flowops.yaml").write_text("schema: mlproject\nentry_point: mian\n")
    _, problems = validate_paths([write(repo, "a.yaml", "name: a\nregion: x\n")])
    assert str(problems[0]) == "MLproject:2: no entry point 'mian' (did you mean 'main'?)"
