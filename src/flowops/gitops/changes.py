"""`flowops changed`: which experiments a PR asks to train, and which its code change makes stale."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.git import changed_experiments, git, git_names, resolve_range
from flowops.spec.load import EXPERIMENTS_DIR, name_problem


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
    from flowops.gitops.at_commit import code_paths_at, schema_at

    try:
        paths = code_paths_at(schema_at(repo, after), repo, after)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    code = git("diff", "--name-only", merge_base, after, "--", *paths, cwd=repo)
    if code is None:
        raise FlowopsError(f"{repo}: git diff failed for {base}..{head}")
    listing = git_names("ls-tree", "-z", "--name-only", after, f"{EXPERIMENTS_DIR}/", cwd=repo)
    if listing is None:  # not "no experiments": the stale list would be empty for the wrong reason
        raise FlowopsError(f"{repo}: git ls-tree failed for {head}: cannot list the experiments")
    every = sorted(p for p in listing if p.endswith((".yaml", ".yml")))
    for path in touched + every:
        bad_name = name_problem(path)
        if bad_name:
            raise FlowopsError(bad_name)
    code_changed = bool(code.strip())
    if code_changed and retrain:
        return Changes(every, [], True)
    stale = [p for p in every if p not in touched] if code_changed else []
    return Changes(sorted(touched), stale, code_changed)


def with_holders(changes: Changes, holder_paths: dict[str, str]) -> tuple[Changes, list[str]]:
    """A PR that changes the code also retrains the experiments holding aliases (they are stale: after
    the merge they would be models of older code); (the plan, the holders' files it added)."""
    if not changes.code_changed:
        return changes, []
    added = sorted({p for p in holder_paths.values() if p in changes.stale})
    planned = Changes(sorted({*changes.experiments, *added}), [p for p in changes.stale if p not in added], True)
    return planned, added


def over_cap(changes: Changes, cap: int) -> str | None:
    """Why a PR trains nothing when it asks for more than `cap` trainings (one GPU job each), or None."""
    if len(changes.experiments) <= cap:
        return None
    return (
        f"this PR would train {len(changes.experiments)} experiments, over the limit of {cap} per PR "
        f"(first: {changes.experiments[0]}): split it into smaller PRs, or raise the repository variable "
        "FLOWOPS_MAX_EXPERIMENTS; nothing trains"
    )


def artifact_name(path: str) -> str:
    """The run bundle's artifact name for `path`: readable, and unique (a hash of the exact path), since
    mapping characters alone makes a_b.yaml and a-b.yaml, or a:b.yaml, the same name."""
    shown = re.sub(r"[^A-Za-z0-9._-]", "_", path)[-80:]
    return f"bundle-{shown}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def github_output(changes: Changes) -> str:
    """Lines for $GITHUB_OUTPUT: JSON lists, and the job matrix (each experiment with its artifact name)."""
    matrix = {"include": [{"experiment": p, "artifact": artifact_name(p)} for p in changes.experiments]}
    return (
        f"experiments={json.dumps(changes.experiments)}\nmatrix={json.dumps(matrix)}\n"
        f"stale={json.dumps(changes.stale)}\n"
        f"code_changed={'true' if changes.code_changed else 'false'}\n"
    )
