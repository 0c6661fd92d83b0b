"""`flowops validate`: every experiment file and the registry policy, with located messages.

Light on purpose: runs on every PR push, so it imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

from pathlib import Path

from flowops import yamlfile
from flowops.errors import Problem, ProblemsError
from flowops.spec.experiment import ExperimentSpec
from flowops.spec.load import POLICY_FILE, load_experiment, load_policy


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


def validate_paths(paths: list[Path]) -> tuple[list[ExperimentSpec], list[Problem]]:
    """Validate every file; all problems of all files, never stopping at the first."""
    specs: list[ExperimentSpec] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    policy = None
    for path in [p for p in paths if Path(p).name == POLICY_FILE]:  # first: it may cap the experiments
        try:
            policy = load_policy(path)
        except ProblemsError as exc:
            problems.extend(exc.problems)
    for path in [p for p in paths if Path(p).name != POLICY_FILE]:
        try:
            spec = load_experiment(path)
        except ProblemsError as exc:
            problems.extend(exc.problems)
            continue
        if spec.name in names:  # run names must be unique, or runs would be confused
            doc_line = yamlfile.load(path).line_of(("name",))
            problems.append(
                Problem(str(path), f"{spec.name!r} is also the name in {names[spec.name]}", doc_line, "name")
            )
        names.setdefault(spec.name, str(path))
        if policy is not None and policy.max_training_batches is not None:
            problem = _budget_problem(Path(path), spec, policy.max_training_batches)
            problems.extend([problem] if problem else [])
        specs.append(spec)
    return specs, problems
