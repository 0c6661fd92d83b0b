"""`flowops validate`: every experiment file and the registry policy, with located messages.

Light on purpose: runs on every PR push, so it imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowops import yamlfile
from flowops.errors import Problem, ProblemsError
from flowops.spec.load import POLICY_FILE, load_policy, name_problem
from flowops.spec.schema import schema_of


def validate_paths(paths: list[Path], root: Path = Path(".")) -> tuple[list[Any], list[Problem]]:
    """Validate every file; all problems of all files, never stopping at the first."""
    specs: list[Any] = []
    problems: list[Problem] = []
    try:
        schema = schema_of(root)
        project, load = schema.config, schema.load
    except ProblemsError as exc:
        return [], list(exc.problems)
    names: dict[str, str] = {}
    policy, policy_path = None, None
    for path in [p for p in paths if Path(p).name == POLICY_FILE]:  # first: it may cap the experiments
        try:
            policy, policy_path = load_policy(path), Path(path)
        except ProblemsError as exc:
            problems.extend(exc.problems)
    for path in [p for p in paths if Path(p).name != POLICY_FILE]:
        bad_name = name_problem(path)
        if bad_name:
            problems.append(Problem(repr(str(path)), bad_name.split(": ", 1)[1]))
            continue
        try:
            spec = load(path)
        except ProblemsError as exc:
            problems.extend(exc.problems)
            continue
        if spec.name in names:  # run names must be unique, or runs would be confused
            doc_line = yamlfile.load(path).line_of(("name",))
            problems.append(
                Problem(str(path), f"{spec.name!r} is also the name in {names[spec.name]}", doc_line, "name")
            )
        names.setdefault(spec.name, str(path))
        if policy is not None and not project.generic:
            problems.extend(schema.plugin.experiment_problems(Path(path), spec, policy))
        specs.append(spec)
    if policy is not None and policy_path is not None and specs and not project.generic:
        problems.extend(schema.plugin.policy_problems(policy_path, policy, specs))
    return specs, problems


EVAL_SET_TAG = "flowops.eval_set"
SKIPPED = {".git", ".venv", "venv", "node_modules", "experiments", "mlruns", ".flowops", "__pycache__"}


def comparison_warnings(root: Path = Path(".")) -> list[Problem]:
    """A policy that compares candidates with holders (improve, max_regression, per_class) in an
    MLflow Project whose code never sets `flowops.eval_set` and that names no evaluate entry point:
    no candidate could ever be compared, so the first model promoted would hold production for good."""
    try:
        project = schema_of(root).config
        policy = load_policy(root / POLICY_FILE) if (root / POLICY_FILE).is_file() else None
    except ProblemsError:
        return []  # validate_paths reports these
    if policy is None or not project.generic or project.evaluate:
        return []
    comparing = [a for a, t in policy.targets.items() if t.improve or t.max_regression or t.per_class]
    if not comparing or _mentions(root, project.code or ["."], EVAL_SET_TAG):
        return []
    return [
        Problem(
            POLICY_FILE,
            f"targets.{comparing[0]} compares with the holder, but the project's code never sets the tag "
            f"{EVAL_SET_TAG} and flowops.yaml names no evaluate entry point: no candidate can be compared, "
            "so the first model promoted keeps the alias; log the tag or add `evaluate:` (docs/own-project.md)",
        )
    ]


def _mentions(root: Path, paths: list[str], text: str) -> bool:
    """Whether any file under `paths` (below `root`) contains `text`."""
    needle = text.encode()
    for name in paths:
        start = root / name
        files = [start] if start.is_file() else start.rglob("*") if start.is_dir() else []
        for path in files:
            if SKIPPED.intersection(path.relative_to(root).parts) or not path.is_file():
                continue
            try:
                if path.stat().st_size < 2 << 20 and needle in path.read_bytes():
                    return True
            except OSError:
                continue
    return False
