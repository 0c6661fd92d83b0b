"""The imported model's code is the reviewed code: each file under `model/code/` is the git blob.

A logged pyfunc carries the code it runs (`code_paths`): the PR stage wrote those files, so they
are a claim. Before import, each is matched to the file of the training code at the approved
commit (`code/flowops/x.py` is `src/flowops/x.py`, or `flowops/x.py` for a project whose code
paths are top-level): a file that differs is replaced by the blob, a compiled cache
(`__pycache__/`, `*.pyc`, which Python may load without its source) is dropped, and a file the
commit does not have refuses the bundle. Then the model's files get a digest
(`flowops.hashing.model_digest`) that serving checks before it loads them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from flowops.bundle.check import BundleRefused
from flowops.gitops.git import git_names

CODE = "model/code/"


@dataclass
class CodeCheck:
    """What became of the model's code: files equal to git, replaced by git, dropped caches."""

    same: int = 0
    replaced: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        replaced, dropped = self.replaced, self.dropped
        text = f"model code: {self.same} file(s) equal to git"
        if replaced:
            text += f", {len(replaced)} replaced by the reviewed blob (first: {replaced[0]})"
        if dropped:
            text += f", {len(dropped)} compiled cache file(s) dropped"
        return text


def code_from_git(folder: Path, files: list[str], repo: Path, commit: str, code_paths: tuple[str, ...]) -> CodeCheck:
    """Make every file under `folder`/model/code/ the blob of the training code at `commit`."""
    blobs = _blobs(repo, commit, code_paths)
    result = CodeCheck()
    matched: dict[str, str] = {}  # bundle path -> git path
    for rel in sorted(f for f in files if f.startswith(CODE)):
        inner = PurePosixPath(rel[len(CODE) :])
        if "__pycache__" in inner.parts or inner.suffix in (".pyc", ".pyo"):
            (folder / rel).unlink()
            result.dropped.append(rel)
            _remove_empty(folder / rel, folder / CODE)
            continue
        match = next((c for c in _where(inner, code_paths) if c in blobs), None)
        if match is None:
            raise BundleRefused(
                f"{folder}: {rel}: not a file of the training code at {commit[:12]} "
                f"({', '.join(code_paths)}); a model's code must be the reviewed code"
            )
        if "\n" in rel or "\r" in rel:  # git hash-object --stdin-paths reads one name a line
            raise BundleRefused(f"{folder}: {rel!r}: a line break in a model code file's name")
        matched[rel] = match
    ids = _blob_ids(repo, [folder / rel for rel in matched])  # one git process for all the files
    for (rel, match), blob_id in zip(matched.items(), ids, strict=True):
        if blob_id == blobs[match]:
            result.same += 1
            continue
        content = subprocess.run(
            ["git", "cat-file", "blob", blobs[match]], cwd=repo, capture_output=True, check=True
        ).stdout
        (folder / rel).write_bytes(content)
        result.replaced.append(rel)
    return result


def _remove_empty(path: Path, stop: Path) -> None:
    """Remove the folders above `path` that are empty now, up to `stop` (an empty folder is uploaded too)."""
    parent = path.parent
    while parent != stop and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _where(inner: PurePosixPath, code_paths: tuple[str, ...]) -> list[str]:
    """Where a model code file may come from: the path itself, or under one of the code paths."""
    return [inner.as_posix(), *(f"{p.rstrip('/')}/{inner.as_posix()}" for p in code_paths)]


def _blobs(repo: Path, commit: str, code_paths: tuple[str, ...]) -> dict[str, str]:
    """path -> blob id of every file of the training code at `commit`."""
    records = git_names("ls-tree", "-r", "-z", commit, "--", *code_paths, cwd=repo)
    if records is None:
        raise BundleRefused(f"{repo}: cannot list the training code at {commit[:12]}")
    blobs = {}
    for record in records:
        meta, _, path = record.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "blob" and mode != "120000":  # a symbolic link in git is not the file it names
            blobs[path] = sha
    return blobs


def _blob_ids(repo: Path, paths: list[Path]) -> list[str]:
    """git's blob id of each file, as `git hash-object` gives it (one process for all)."""
    if not paths:
        return []
    listing = "".join(f"{path}\n" for path in paths)
    out = subprocess.run(
        ["git", "hash-object", "--no-filters", "--stdin-paths"],
        cwd=repo,
        input=listing,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()
