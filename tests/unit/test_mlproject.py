"""The MLflow Project, the experiment schema and the environments agree with each other."""

import json
import re
import tomllib

import pytest
import yaml

from flowops.segmentation.experiment import DatasetPaths, ExperimentSpec, json_schema, load_experiment
from flowops.segmentation.params import (
    EXTRA_PARAMETERS,
    PARAMETERS,
    default_params,
    parse_args,
    spec_from_params,
    spec_to_params,
)

from ..conftest import REPO

MLPROJECT = yaml.safe_load((REPO / "MLproject").read_text())
ENTRY = MLPROJECT["entry_points"]["main"]


def test_every_schema_field_has_a_parameter_and_back():
    fields = set(ExperimentSpec.model_fields) - {"dataset"}
    dataset_fields = set(DatasetPaths.model_fields) - {"root"}
    assert set(PARAMETERS) == fields | dataset_fields | {"dataset"}
    assert set(ENTRY["parameters"]) == set(PARAMETERS) | set(EXTRA_PARAMETERS)


def test_parameter_types_defaults_and_help_match():
    defaults = default_params()
    for name, declared in ENTRY["parameters"].items():
        kind = PARAMETERS.get(name, (EXTRA_PARAMETERS.get(name),))[0]
        assert declared["type"] == kind, name
        assert declared.get("description"), f"{name} has no description"
        if name == "categories":
            assert "default" not in declared  # required, as in the original MLproject
        elif name in DatasetPaths.model_fields:  # a folder's layout; dataset: coco reads (and logs) the 2017 one
            assert str(declared["default"]) == DatasetPaths.model_fields[name].default, name
        else:
            assert str(declared["default"]) == defaults.get(name, ""), name


def test_command_passes_every_parameter_once():
    command = ENTRY["command"]
    # the interpreter flowops train runs in (FLOWOPS_PYTHON), else the one on PATH (mlflow run, a container)
    assert command.startswith('PYTHONPATH=src:$PYTHONPATH "${{FLOWOPS_PYTHON:-python}}" -m flowops.train ')
    passed = re.findall(r"--(\w+) \{(\w+)\}", command)
    assert [a for a, b in passed if a == b] == [*PARAMETERS, *EXTRA_PARAMETERS]
    assert MLPROJECT["conda_env"] == "conda.yaml"


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_round_trip_through_parameters_with_the_same_identity(path):
    spec = load_experiment(path)
    params = spec_to_params(spec)
    assert spec_from_params(params).sha256() == spec.sha256()
    argv = [x for k, v in params.items() for x in (f"--{k}", v)] + ["--experiment_file", str(path)]
    rebuilt, experiment_file = parse_args(argv)
    assert rebuilt == spec
    assert experiment_file == str(path)


def test_coco_dataset_round_trips():
    spec = ExperimentSpec.model_validate(
        {"name": "c", "categories": ["cat", "dog"], "dataset": "coco", "encoder_weights": "imagenet"}
    )
    params = spec_to_params(spec)
    assert (params["dataset"], params["encoder_weights"], params["max_batches_per_epoch"]) == ("coco", "imagenet", "0")
    assert spec_from_params(params) == spec


def test_bad_parameter_is_named():
    from flowops.errors import FlowopsError

    params = default_params() | {"categories": "person", "epochs": "two"}
    with pytest.raises(FlowopsError, match=r"^parameter epochs: must be an integer \(got 'two'\)$"):
        spec_from_params(params)
    params["epochs"] = "0"
    with pytest.raises(FlowopsError, match=r"^parameter epochs: Input should be greater than or equal to 1 \(got 0\)$"):
        spec_from_params(params)


def _requirement_names(reqs):
    return {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower(): r for r in reqs}


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = (
        project["dependencies"]
        + project["optional-dependencies"]["tracking"]
        + [r for r in project["optional-dependencies"]["train"] if not r.startswith("flowops")]
    )
    wanted = [r.split("#")[0].strip() for r in wanted]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    assert "python=3.11" in conda["dependencies"]
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(wanted)


def test_committed_json_schema_is_current():
    committed = json.loads((REPO / "experiments" / "schema.json").read_text())
    assert committed == json_schema(), "run `flowops schema` and commit experiments/schema.json"


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_point_editors_at_the_schema(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=schema.json"
