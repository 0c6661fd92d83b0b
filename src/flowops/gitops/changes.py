"""`flowops changed`: which experiments a PR asks to train, and which its code change makes stale."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.git import changed_experiments, git, resolve_range
from flowops.spec.load import EXPERIMENTS_DIR


@dataclass
class Changes:
    experiments: list[str]  # to train: added or changed in the PR (all of them with --retrain)
    stale: list[str]  # trained on code the PR changes, not retrained by it
    code_changed: bool


def pr_changes(repo: Path, base: str, head: str, retrain: bool = False) -> Changes:
    """Compare the PR head with its merge base, as GitHub's 'Files changed' does."""
    before, after = resolve_range(repo, f"{base}..{head}")
    merge_base = git("merge-base", before, after, cwd=repo) or before
    touched = [path for status, path in changed_experiments(repo, merge_base, after) if status != "D"]
    from flowops.gitops.project import code_paths_at, schema_at

    try:
        paths = code_paths_at(schema_at(repo, after), repo, after)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    code = git("diff", "--name-only", merge_base, after, "--", *paths, cwd=repo)
    if code is None:
        raise FlowopsError(f"{repo}: git diff failed for {base}..{head}")
    listing = git("ls-tree", "--name-only", after, f"{EXPERIMENTS_DIR}/", cwd=repo)
    if listing is None:  # not "no experiments": the stale list would be empty for the wrong reason
        raise FlowopsError(f"{repo}: git ls-tree failed for {head}: cannot list the experiments")
    every = sorted(p for p in listing.splitlines() if p.endswith((".yaml", ".yml")))
    code_changed = bool(code.strip())
    if code_changed and retrain:
        return Changes(every, [], True)
    stale = [p for p in every if p not in touched] if code_changed else []
    return Changes(sorted(touched), stale, code_changed)


def github_output(changes: Changes) -> str:
    """Lines for $GITHUB_OUTPUT: JSON lists, and the job matrix {"experiment": [...]}."""
    return (
        f"experiments={json.dumps(changes.experiments)}\nmatrix={json.dumps({'experiment': changes.experiments})}\n"
        f"stale={json.dumps(changes.stale)}\n"
        f"code_changed={'true' if changes.code_changed else 'false'}\n"
    )
