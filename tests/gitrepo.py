"""A git repository in a temp folder holding a copy of this project's files (integration and workflow tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .conftest import REPO


class GitRepo:
    """Copies the project's files under `paths` (all when empty): tracked ones and untracked ones
    git does not ignore, as a fresh clone plus the working changes; then `git init` on main.
    Subclasses add their files and make the first commit."""

    def __init__(self, path: Path, paths: list[str]):
        self.path = path
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for name in listed:
            if (REPO / name).is_file():  # a tracked file deleted in the working tree is left out
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, path / name)
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, check: bool = True) -> str:
        """git's output; with check=False, '' when git fails."""
        ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        proc = subprocess.run(["git", *ident, *args], cwd=self.path, capture_output=True, text=True, check=check)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-qm", message)
        return self.head

    @property
    def head(self) -> str:
        return self.git("rev-parse", "HEAD")
