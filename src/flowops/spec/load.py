"""Reading the YAML files people write: the registry policy, and what every experiment file shares.

Every loader validates completely and raises `ProblemsError` with each located problem;
`policy_or_error` is the one place that turns that into a single-line `FlowopsError` for
commands that need a policy before they can do anything else.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from flowops import yamlfile
from flowops.errors import FlowopsError, Problem, ProblemsError
from flowops.spec.policy import RegistryPolicy, policy_problems
from flowops.spec.problems import problems_from, where

EXPERIMENTS_DIR = "experiments"
POLICY_FILE = "registry_policy.yaml"


def name_problem(path: str | Path) -> str | None:
    """Why a file name cannot name an experiment, or None. A control character (a line break, say)
    reads differently in git's output, in the job matrix and in a workflow log (where a line of its
    own can be a workflow command); every other character is read as it is (git -z)."""
    import unicodedata

    bad = next((ch for ch in str(path) if unicodedata.category(ch) == "Cc"), None)
    if bad is None:
        return None
    return f"{str(path)!r}: the file name holds the control character {bad!r}; rename the file"


def default_paths(root: Path = Path(".")) -> list[Path]:
    """Every experiment file under experiments/, plus the registry policy if present."""
    folder = root / EXPERIMENTS_DIR
    paths = sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml")) if folder.is_dir() else []
    policy = root / POLICY_FILE
    return paths + ([policy] if policy.exists() else [])


def load_policy(path: str | Path = POLICY_FILE, text: str | None = None) -> RegistryPolicy:
    """Read and validate the registry policy (or its `text`); ProblemsError lists every located problem."""
    doc = yamlfile.load(path, text)
    if not isinstance(doc.data, dict):
        raise ProblemsError([not_a_mapping(doc, "registry policy settings")])
    try:
        policy = RegistryPolicy.model_validate(doc.data)
    except ValidationError as exc:
        raise ProblemsError(problems_from(doc, exc, RegistryPolicy)) from None
    problems = [Problem(doc.path, message, doc.line_of(loc), where(loc)) for loc, message in policy_problems(policy)]
    if problems:
        raise ProblemsError(problems)
    return policy


def policy_or_error(path: str | Path = POLICY_FILE, text: str | None = None) -> RegistryPolicy:
    """load_policy for commands: its first problem as a one-line FlowopsError."""
    try:
        return load_policy(path, text)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None


def not_a_mapping(doc: yamlfile.Document, what: str) -> Problem:
    if doc.data is None:
        return Problem(doc.path, f"file is empty; expected a mapping of {what}", 1)
    # The value itself is not quoted: a file that is one value may be a token someone linked here.
    words = {
        str: "a single line of text",
        bool: "a single true/false",
        int: "a single number",
        float: "a single number",
    }
    kind = "a list" if isinstance(doc.data, list) else words.get(type(doc.data), "a single value")
    return Problem(doc.path, f"top level must be a mapping of {what}, got {kind}", 1)
