"""Where a command reads the project's files: the working tree, or one commit of the repository.

A job of the trusted stage has the base branch checked out (GitHub's `pull_request_target`);
what the PR proposes it reads from git at the approved head, never from its working tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.at_commit import code_paths_at, schema_at
from flowops.gitops.git import code_tree, git, git_show


@dataclass(frozen=True)
class Source:
    """The working tree of `repo` (commit None) or `repo` at `commit`."""

    repo: Path
    commit: str | None = None

    @classmethod
    def working_tree(cls, repo: Path = Path(".")) -> Source:
        return cls(repo)

    @classmethod
    def at(cls, repo: Path, ref: str) -> Source:
        """`repo` at the commit `ref` names; a one-line error when it names none."""
        sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
        if not sha:
            raise FlowopsError(f"--ref {ref}: not a commit in {repo} (fetch the PR head first)")
        return cls(repo, sha)

    def where(self) -> str:
        return "the working tree" if self.commit is None else f"commit {self.commit[:12]}"

    def _text(self, path: str | Path) -> str:
        assert self.commit is not None
        rel = PurePosixPath(Path(path).as_posix())
        if rel.is_absolute() or ".." in rel.parts:
            raise FlowopsError(f"{path}: with --ref, name a file inside the repository (relative to it)")
        return git_show(self.repo, self.commit, str(rel))

    def policy(self, path: str | Path) -> Any:
        """The registry policy file `path`, checked (one-line error naming the commit when it is not valid)."""
        from flowops.spec.load import policy_or_error

        if self.commit is None:
            return policy_or_error(path)
        return policy_or_error(path, self._text(path))

    def schema(self) -> Any:
        """How experiment files are read here (flowops.yaml and the MLproject)."""
        from flowops.spec.schema import schema_or_error

        if self.commit is None:
            return schema_or_error(self.repo)
        try:
            return schema_at(self.repo, self.commit)
        except ProblemsError as exc:
            raise FlowopsError(f"at {self.commit[:12]}: {exc.problems[0]}") from None

    def experiment(self, path: str) -> Any:
        """The experiment spec in `path`; ProblemsError when it is not valid."""
        schema = self.schema()
        if self.commit is None:
            return schema.load(path)
        return schema.load(path, self._text(path))

    def code_tree(self) -> str | None:
        """The tree hash of the training code here (uncommitted edits count in the working tree)."""
        paths = code_paths_at(self.schema(), self.repo, self.commit or "HEAD")
        return code_tree(self.commit, repo=self.repo, paths=paths)
