"""The segmentation template's schema plug-in (entry point `segmentation` of `flowops.schema`):
its experiment files, their MLproject parameters, and what `flowops validate` checks of them
against the registry policy."""

from __future__ import annotations

from pathlib import Path

from flowops import yamlfile
from flowops.errors import Problem
from flowops.segmentation.experiment import DatasetPaths, ExperimentSpec, json_schema, load_experiment
from flowops.segmentation.metrics import VOCABULARY
from flowops.segmentation.params import EXTRA_PARAMETERS, PARAMETERS, spec_from_params, spec_to_params
from flowops.spec.load import POLICY_FILE
from flowops.spec.policy import RegistryPolicy, metric_locations
from flowops.spec.problems import where
from flowops.spec.template import SchemaPlugin
from flowops.suggest import did_you_mean


def experiment_problems(path: Path, spec: ExperimentSpec, policy: RegistryPolicy) -> list[Problem]:
    """The policy's cap on training (`max_training_batches`), checked against one experiment."""
    if policy.max_training_batches is None:
        return []
    problem = _budget_problem(path, spec, policy.max_training_batches)
    return [problem] if problem else []


def _budget_problem(path: Path, spec: ExperimentSpec, cap: int) -> Problem | None:
    """The policy caps epochs x max_batches_per_epoch; an uncapped epoch cannot be checked."""
    if spec.training_budget is not None and spec.training_budget <= cap:
        return None
    doc = yamlfile.load(path)
    if spec.training_budget is None:
        return Problem(
            str(path),
            f"required: {POLICY_FILE} caps training at {cap} batches (max_training_batches)",
            doc.line_of(("max_batches_per_epoch",)),
            "max_batches_per_epoch",
        )
    return Problem(
        str(path),
        f"training budget {spec.epochs} epochs x {spec.max_batches_per_epoch} batches = {spec.training_budget}, "
        f"over the cap of {cap} in {POLICY_FILE}",
        doc.line_of(("epochs",)),
        "epochs",
    )


def _per_class_problems(path: Path, policy: RegistryPolicy, specs: list[ExperimentSpec]) -> list[Problem]:
    """A per-class metric (`val_iou.<category>`) must name a category some experiment trains."""
    known = sorted({c for spec in specs for c in spec.class_names})
    doc = yamlfile.load(path)
    out = []
    for loc, name in metric_locations(policy):
        prefix = VOCABULARY.per_class
        category = name[len(prefix) :] if name.startswith(prefix) else None
        if category is not None and category not in known:
            message = (
                f"no experiment has the category {category!r}{did_you_mean(category, known)}; "
                f"per-class metrics name one of: {', '.join(known)}"
            )
            out.append(Problem(str(path), message, doc.line_of(loc), where(loc)))
    return out


def policy_problems(path: Path, policy: RegistryPolicy, specs: list[ExperimentSpec]) -> list[Problem]:
    return _per_class_problems(path, policy, specs)


SCHEMA = SchemaPlugin(
    load=load_experiment,
    from_params=spec_from_params,
    to_params=spec_to_params,
    parameters=frozenset(PARAMETERS),
    extra_parameters=frozenset(EXTRA_PARAMETERS),
    json_schema=json_schema,
    experiment_problems=experiment_problems,
    policy_problems=policy_problems,
    documented=(
        ("## Experiment files (`experiments/*.yaml`, segmentation)", ExperimentSpec),
        ("`dataset` as a mapping (a COCO-format folder):", DatasetPaths),
    ),
)
