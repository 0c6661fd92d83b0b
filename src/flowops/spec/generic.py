"""Experiments of any MLflow Project: an experiment file names an MLproject entry point's parameters.

    # experiments/baseline.yaml
    name: baseline                 # the run name; unique among the experiments
    description: Why this exists   # free text, not part of the identity
    experiment_name: iris          # the MLflow experiment (default: the MLproject's name)
    C: 1.0                         # every other key is a parameter of the entry point
    max_iter: 200

The schema comes from the MLproject: each parameter's `type` (float, int, string, path, uri)
and `default` (a parameter without one is required). Unknown keys get a did-you-mean hint; the
identity is the sha256 of the normalised experiment (defaults filled in, description left out),
as for the segmentation spec.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowops import yamlfile
from flowops.errors import FlowopsError, Problem, ProblemsError
from flowops.spec.problems import show
from flowops.suggest import did_you_mean

RESERVED = ("name", "description", "experiment_name")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TYPES = ("float", "int", "string", "path", "uri")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any = None  # None: required
    rule: Any = None  # flowops.yaml's ParameterRule (min, max, choices), checked by validate


@dataclass(frozen=True)
class EntryPoint:
    project: str  # the MLproject's `name`
    name: str
    parameters: dict[str, Parameter]


@dataclass
class GenericExperiment:
    name: str
    experiment_name: str
    params: dict[str, Any]  # every parameter, defaults filled in, as typed values
    description: str = ""
    training_budget: int | None = None  # the segmentation policy's cap does not apply
    categories: list[str] = field(default_factory=list)

    def normalised(self) -> dict:
        return {"name": self.name, "experiment_name": self.experiment_name, **self.params}

    def sha256(self) -> str:
        text = json.dumps(self.normalised(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def mlflow_params(self) -> dict[str, str]:
        """The parameters as the strings `mlflow run -P` passes."""
        return {k: _text(v) for k, v in self.params.items()}


def entry_point(root: str | Path = ".", name: str = "main", text: str | None = None) -> EntryPoint:
    """The entry point's parameters, read from the MLproject (or its `text`); ProblemsError where it is malformed."""
    path = Path(root) / "MLproject"
    doc = yamlfile.load(path, text)
    data: dict = doc.data if isinstance(doc.data, dict) else {}
    found = data.get("entry_points")
    points: dict = found if isinstance(found, dict) else {}
    if name not in points:
        raise ProblemsError(
            [Problem(str(path), f"no entry point {name!r}{did_you_mean(name, points)}", doc.line_of(("entry_points",)))]
        )
    declared = (points[name] if isinstance(points[name], dict) else {}).get("parameters") or {}
    parameters, problems = {}, []
    for key, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {"type": "string", "default": spec}  # `x: 1` shorthand
        kind = str(spec.get("type", "string"))
        if kind not in TYPES:
            loc = ("entry_points", name, "parameters", key, "type")
            problems.append(Problem(str(path), f"type {kind!r} is not one of {', '.join(TYPES)}", doc.line_of(loc)))
            continue
        parameters[key] = Parameter(key, kind, spec.get("default"))
    if problems:
        raise ProblemsError(problems)
    return EntryPoint(str(data.get("name") or "default"), name, parameters)


def with_rules(point: EntryPoint, rules: dict[str, Any] | None, where: str = "flowops.yaml") -> EntryPoint:
    """`point` with flowops.yaml's `parameters:` rules attached; ProblemsError for a rule of no parameter."""
    if not rules:
        return point
    problems = [
        Problem(
            where,
            f"a rule for {name!r}, which is not a parameter of entry point {point.name!r}"
            f"{did_you_mean(name, list(point.parameters))}",
            None,
            f"parameters.{name}",
        )
        for name in rules
        if name not in point.parameters
    ]
    if problems:
        raise ProblemsError(problems)
    parameters = {
        key: replace(parameter, rule=rules.get(key)) if key in rules else parameter
        for key, parameter in point.parameters.items()
    }
    return EntryPoint(point.project, point.name, parameters)


def load_generic(path: str | Path, point: EntryPoint, text: str | None = None) -> GenericExperiment:
    """Read one experiment file against the entry point's parameters; every problem, located."""
    doc = yamlfile.load(path, text, keep_going=True)
    if not isinstance(doc.data, dict):
        raise ProblemsError(
            doc.problems or [Problem(str(path), "top level must be a mapping of the experiment's parameters", 1)]
        )
    data, problems = doc.data, []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(str(path), message, doc.line_of((key,)), key))

    name = data.get("name")
    if name is None:
        problems.append(Problem(str(path), "required (the run name)", 1, "name"))
    elif not isinstance(name, str) or not NAME.fullmatch(name):
        problem("name", f"must be letters, digits, '.', '_' or '-', at most 64 (got {show(name)})")
    for key in ("description", "experiment_name"):
        if key in data and not isinstance(data[key], str):
            problem(key, f"must be text (got {show(data[key])})")
    params: dict[str, Any] = {}
    for key, value in data.items():
        if key in RESERVED:
            continue
        if key not in point.parameters:
            known = sorted(point.parameters)
            problem(
                key,
                f"not a parameter of entry point {point.name!r}{did_you_mean(key, known)}; "
                f"known: {', '.join(known) or 'none'}",
            )
            continue
        if (key,) in doc.unreadable:  # said already (a leading zero): no second problem for its None
            params[key] = None
            continue
        why = _type_problem(point.parameters[key], value) or _constraint_problem(point.parameters[key], value)
        if why:
            problem(key, why)
        params[key] = _typed(point.parameters[key], value)  # `C: 1` and `C: 1.0` are one experiment
    for key, parameter in point.parameters.items():
        if key not in params:
            if parameter.default is None:
                problems.append(Problem(str(path), "required (the MLproject gives no default)", 1, key))
            else:
                params[key] = _typed(parameter, parameter.default)
    for found in doc.problems:  # the reader's, each before the first later-line problem
        at = next((i for i, p in enumerate(problems) if (p.line or 0) > (found.line or 0)), len(problems))
        problems.insert(at, found)
    if problems:
        raise ProblemsError(problems)
    return GenericExperiment(
        name=str(name),
        experiment_name=str(data.get("experiment_name") or point.project),
        params=params,
        description=str(data.get("description") or ""),
    )


def from_params(point: EntryPoint, params: dict[str, str], name: str, experiment_name: str) -> GenericExperiment:
    """The experiment a run's logged parameters make (FlowopsError when one is missing or mistyped)."""
    typed = {}
    for key, parameter in point.parameters.items():
        if key not in params:
            raise FlowopsError(f"{key}: not logged by the run")
        value = _typed(parameter, params[key])
        if parameter.type in ("float", "int") and isinstance(value, str):
            kind = "a whole number" if parameter.type == "int" else "a number"
            raise FlowopsError(f"{key}: logged {params[key]!r}, which is not {kind}")
        typed[key] = value
    return GenericExperiment(name=name, experiment_name=experiment_name, params=typed)


def _type_problem(parameter: Parameter, value: Any) -> str | None:
    if parameter.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {show(value)})"
        if not math.isfinite(value):
            return f"must be a finite number (got {show(value)})"
    elif parameter.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number (got {show(value)})"
    elif not isinstance(value, str):
        return f"must be text (got {show(value)}); quote it if you mean the text"
    return None


def _constraint_problem(parameter: Parameter, value: Any) -> str | None:
    """Why `value` breaks flowops.yaml's rule for the parameter, or None."""
    rule = parameter.rule
    if rule is None:
        return None
    said = f"(flowops.yaml parameters.{parameter.name}; got {show(value)})"
    if rule.choices is not None and value not in rule.choices:
        return f"must be one of {', '.join(map(str, rule.choices))} {said}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and rule.min is not None and value < rule.min:
        return f"must be at least {rule.min:g} {said}"
    if number and rule.max is not None and value > rule.max:
        return f"must be at most {rule.max:g} {said}"
    return None


def _typed(parameter: Parameter, default: Any) -> Any:
    """The MLproject default as the value an experiment file would hold."""
    try:
        if parameter.type == "float":
            return float(default)
        if parameter.type == "int":
            return int(default)
    except (TypeError, ValueError):
        pass
    return str(default)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
