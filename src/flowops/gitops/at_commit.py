"""The project's schema as a commit has it: flowops.yaml and the MLproject read from git."""

from __future__ import annotations

from pathlib import Path

from flowops.gitops.git import git, git_names, git_show
from flowops.spec.declaration import PROJECT_FILE, ProjectConfig, load_project
from flowops.spec.generic import entry_point, with_rules
from flowops.spec.schema import Schema


def schema_at(repo: Path, commit: str) -> Schema:
    """The schema committed at `commit` (flowops.yaml and MLproject as they were there)."""
    if git("cat-file", "-e", f"{commit}:{PROJECT_FILE}", cwd=repo) is None:
        return Schema(ProjectConfig())
    config = load_project(repo, git_show(repo, commit, PROJECT_FILE))
    if not config.generic:
        return Schema(config)
    point = entry_point(repo, config.entry_point, git_show(repo, commit, "MLproject"))
    return Schema(config, with_rules(point, config.parameters))


def code_paths_at(schema: Schema, repo: str | Path, commit: str = "HEAD") -> tuple[str, ...]:
    """`schema.code_paths` for the top-level entries of `commit`."""
    names = git_names("ls-tree", "-z", "--name-only", commit, cwd=repo) or []
    return schema.code_paths(names)
