"""`flowops init --existing`: onboard an MLflow Project where it is, writing only what is missing.

It reads the MLproject (the entry point's parameters and their defaults), the metrics the project's
runs logged (or the metric it is told), and writes flowops.yaml, a policy, a first experiment with
the MLproject's defaults, and the workflows with a pinned flowops. It never overwrites a file: one
that exists is left as it is and said so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.spec.generic import EntryPoint, entry_point

LOWER = re.compile(r"(loss|rmse|mse|mae|mape|error|err|logloss|deviance|perplexity|latency)", re.I)
HIGHER = re.compile(r"(r2|acc|accuracy|f1|auc|precision|recall|iou|score|map|ndcg|dice)", re.I)


@dataclass
class Adopted:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # there already: left as it is
    notes: list[str] = field(default_factory=list)


def direction_of(metric: str) -> str | None:
    """'min' or 'max' for a metric name that says it (rmse, val_loss, r2, accuracy), else None."""
    if LOWER.search(metric):
        return "min"
    if HIGHER.search(metric):
        return "max"
    return None


def logged_metrics(tracking_uri: str | None, experiment_name: str) -> list[str]:
    """The metrics the project's FINISHED runs logged (its MLflow experiment, or Default), most common first."""
    from collections import Counter

    from mlflow import MlflowClient

    from flowops import tracking

    client = MlflowClient(tracking.resolve_uri(tracking_uri))
    found = [client.get_experiment_by_name(name) for name in dict.fromkeys((experiment_name, "Default"))]
    ids = [e.experiment_id for e in found if e is not None]  # `mlflow run .` logs to Default unless told
    if not ids:
        return []
    runs = client.search_runs(ids, "attributes.status = 'FINISHED'", max_results=50)
    counts = Counter(key for run in runs for key in run.data.metrics)
    return [name for name, _ in counts.most_common()]


def choose_metric(candidates: list[str]) -> str | None:
    """The metric to rank by: the first whose name says its direction (an error before a score)."""
    return next((m for m in candidates if direction_of(m)), None)


def plan(folder: Path, point: EntryPoint, metric: str, direction: str) -> dict[str, str]:
    """The files to write (relative path -> text), before anything is written."""
    from flowops.spec.load import load_policy

    model = re.sub(r"[^A-Za-z0-9._-]+", "-", point.project).strip("-") or "model"
    policy = (
        "# Promotion rules applied when an experiment is merged to main (`flowops promote`), written by\n"
        "# `flowops init --existing` from the metrics this project logs: tighten them to what you need.\n"
        f"model_name: {model}\n"
        f"primary_metric: {metric}\n"
        "metrics:                 # each metric's direction: min (lower is better) or max\n"
        f"  {metric}: {direction}\n"
        "targets:\n"
        "  staging: {}            # any trained model of a merged experiment\n"
        "  production:\n"
        "    improve: {absolute: 0.0}   # must beat the model holding production on the primary metric\n"
        "require_same_code: true  # a model ships only if it was trained on the merged code\n"
        "mode: enabled\n"
    )
    load_policy("registry_policy.yaml", policy)  # what is written is valid, or nothing is
    lines = ["name: baseline", "description: The MLproject's defaults."]
    required = []
    for name, parameter in point.parameters.items():
        if parameter.default is None:
            required.append(name)
            lines.append(f"{name}:   # required: the MLproject gives no default")
        else:
            lines.append(f"{name}: {_yaml_value(parameter.default, parameter.type)}")
    config = (
        "# flowops: this repository is an MLflow Project; experiments set its entry point's parameters.\n"
        "schema: mlproject\n"
        f"entry_point: {point.name}\n"
        "model: model        # the name the entry point logs its model under: log_model(..., 'model')\n"
        "# evaluate: evaluate  # an entry point scoring a holder on the same rows (docs/own-project.md)\n"
        "# parameters:         # constraints validate checks, e.g. l1_ratio: {min: 0, max: 1}\n"
    )
    files = {"flowops.yaml": config, "registry_policy.yaml": policy}
    if not any((folder / "experiments").glob("*.y*ml")):
        files["experiments/baseline.yaml"] = "\n".join(lines) + "\n"
    return files


def _yaml_value(value: Any, kind: str) -> str:
    import yaml

    if kind == "float":
        try:
            return repr(float(value))
        except (TypeError, ValueError):
            pass
    if kind == "int":
        try:
            return str(int(value))
        except (TypeError, ValueError):
            pass
    return yaml.safe_dump(str(value), default_style='"').strip()


def adopt(
    folder: Path, entry: str, metric: str | None, direction: str | None, tracking_uri: str | None, ask: bool
) -> tuple[dict[str, str], Adopted]:
    """What `init --existing` writes for the MLflow Project in `folder` (the texts; nothing written yet)."""
    import click

    if not (folder / "MLproject").is_file():
        raise FlowopsError(f"{folder}: no MLproject here; --existing onboards an MLflow Project in place")
    try:
        point = entry_point(folder, entry)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    done = Adopted()
    if metric is None:
        seen = logged_metrics(tracking_uri, point.project)
        metric = choose_metric(seen)
        if metric:
            done.notes.append(f"primary metric {metric} (of the metrics its runs logged: {', '.join(seen[:8])})")
        elif ask:
            metric = click.prompt("The metric that ranks models (as the project logs it)", type=str).strip()
        else:
            listed = f" (its runs logged: {', '.join(seen[:8])})" if seen else " (no finished run of it was found)"
            raise FlowopsError(f"which metric ranks models?{listed}: pass --metric NAME and --direction min|max")
    direction = direction or direction_of(metric)
    if direction is None:
        if not ask:
            raise FlowopsError(f"--metric {metric}: its name does not say its direction; pass --direction min|max")
        direction = click.prompt(f"{metric}: lower or higher is better", type=click.Choice(["min", "max"]))
    return plan(folder, point, metric, direction), done


def write_new(folder: Path, files: dict[str, str], done: Adopted) -> None:
    """Write each file that does not exist; keep (and list) each that does."""
    for name, text in files.items():
        path = folder / name
        if path.exists():
            done.kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        done.written.append(path)
