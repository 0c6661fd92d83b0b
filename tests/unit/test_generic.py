"""Experiments of any MLflow Project: checked against the MLproject entry point's parameters."""

from __future__ import annotations

import pytest

from flowops.errors import ProblemsError
from flowops.spec.declaration import load_project
from flowops.spec.generic import entry_point, load_generic
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


def test_a_float_written_as_a_whole_number_is_the_same_experiment(repo):
    point = entry_point(repo)
    whole = load_generic(write(repo, "a.yaml", "name: a\nregion: north\nalpha: 1\n"), point)
    point_zero = load_generic(write(repo, "b.yaml", "name: a\nregion: north\nalpha: 1.0\n"), point)
    assert whole.params["alpha"] == 1.0 and isinstance(whole.params["alpha"], float)
    assert whole.sha256() == point_zero.sha256() and whole.mlflow_params()["alpha"] == "1.0"


def test_the_logged_parameters_rebuild_the_experiment_exactly(repo):
    """How a merge binds its run: what the run was given must make the merged file's identity."""
    from flowops.errors import FlowopsError
    from flowops.spec.schema import schema_of

    schema = schema_of(repo)
    merged = schema.load(write(repo, "a.yaml", "name: a\nregion: north\nalpha: 0.1\nhorizon: 14\n"))
    logged = {**merged.mlflow_params(), "rows_train": "400"}  # a trainer may log more parameters
    assert schema.from_params(logged, "a", "forecast").sha256() == merged.sha256()
    assert schema.from_params({**logged, "alpha": "0.2"}, "a", "forecast").sha256() != merged.sha256()
    assert schema.from_params(logged, "b", "forecast").sha256() != merged.sha256()  # another name: another run
    with pytest.raises(FlowopsError, match=r"horizon: logged '14\.5', which is not a whole number"):
        schema.from_params({**logged, "horizon": "14.5"}, "a", "forecast")
    with pytest.raises(FlowopsError, match="region: not logged by the run"):
        schema.from_params({k: v for k, v in logged.items() if k != "region"}, "a", "forecast")


def test_the_code_is_every_top_level_path_but_experiments_and_docs_unless_named(repo):
    from flowops.spec.schema import schema_of

    names = ["MLproject", "README.md", "docs", "experiments", "flowops.yaml", "registry_policy.yaml", "src", "train.py"]
    assert schema_of(repo).code_paths(names) == ("MLproject", "flowops.yaml", "src", "train.py")
    (repo / "flowops.yaml").write_text("schema: mlproject\ncode: [train.py, MLproject]\n")
    assert schema_of(repo).code_paths(names) == ("train.py", "MLproject")
    (repo / "flowops.yaml").write_text("")
    assert schema_of(repo).code_paths(names) == ("src", "MLproject", "conda.yaml")  # the segmentation project's


def test_a_merge_reads_the_schema_its_commit_had(repo):
    """Promotion replays history: each merge is read with flowops.yaml and the MLproject of its commit."""
    import subprocess

    from flowops.gitops.at_commit import schema_at

    def git(*args: str) -> str:
        ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        return subprocess.run(["git", *ident, *args], cwd=repo, capture_output=True, text=True, check=True).stdout

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "one")
    first = git("rev-parse", "HEAD").strip()
    (repo / "MLproject").write_text(MLPROJECT.replace("horizon", "steps"))
    (repo / "flowops.yaml").unlink()
    assert schema_at(repo, first).generic and "horizon" in schema_at(repo, first).point.parameters
    git("add", "-A")
    git("commit", "-qm", "two")
    assert not schema_at(repo, git("rev-parse", "HEAD").strip()).generic  # no flowops.yaml: segmentation


def test_every_problem_of_a_file_is_reported_a_leading_zero_too_in_line_order(repo):
    """#31: `alpha: yes` went unreported when another line had `010` (the YAML reader stopped there)."""
    path = write(repo, "a.yaml", "name: a\nalpha: yes\nhorizon: 010\nregion: north\n")
    with pytest.raises(ProblemsError) as failed:
        load_generic(path, entry_point(repo))
    assert [str(p) for p in failed.value.problems] == [
        "experiments/a.yaml:2: alpha: must be a number (got 'yes')",
        "experiments/a.yaml:3: 010: an integer with a leading zero is ambiguous (8 in YAML 1.1, 10 in 1.2); "
        "write it without the zero",
    ]


def test_a_leading_zero_alone_still_fails_the_file(repo):
    """Read on past it (to report the other lines), the value is None: the file must not pass."""
    path = write(repo, "a.yaml", "name: a\nhorizon: 010\nregion: north\n")
    with pytest.raises(ProblemsError) as failed:
        load_generic(path, entry_point(repo))
    assert [str(p) for p in failed.value.problems] == [
        "experiments/a.yaml:2: 010: an integer with a leading zero is ambiguous (8 in YAML 1.1, 10 in 1.2); "
        "write it without the zero",
    ]


def test_flowops_yaml_constrains_parameters_and_validate_checks_them(repo):
    """#31: `l1_ratio: 2` validated and then failed in the trainer; a range or a list of choices in
    flowops.yaml makes it a validation error, on its line."""
    (repo / "flowops.yaml").write_text(
        "schema: mlproject\nparameters:\n  alpha: {min: 0, max: 1}\n  region: {choices: [north, south]}\n"
    )
    path = write(repo, "bad.yaml", "name: bad\nalpha: 2\nregion: west\n")
    _, problems = validate_paths([write(repo, "ok.yaml", "name: ok\nalpha: 1\nregion: south\n"), path])
    assert [str(p) for p in problems] == [
        "experiments/bad.yaml:2: alpha: must be at most 1 (flowops.yaml parameters.alpha; got 2)",
        "experiments/bad.yaml:3: region: must be one of north, south (flowops.yaml parameters.region; got 'west')",
    ]
    (repo / "flowops.yaml").write_text("schema: mlproject\nparameters:\n  alpah: {min: 0}\n")
    from flowops.spec.schema import schema_of

    with pytest.raises(
        ProblemsError, match=r"a rule for 'alpah', which is not a parameter of entry point 'main'.*alpha"
    ):
        schema_of(repo)
