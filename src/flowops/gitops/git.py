"""Git as flowops reads it: commits, ranges, the experiment files they change, code trees.

Light (no MLflow, no TensorFlow): `changed` runs on every PR push and `promote` checks
that the code that trained a run is the code that was merged ("reviewed = shipped").
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from flowops.errors import FlowopsError
from flowops.spec.declaration import CODE_PATHS  # what decides how a model is trained (by default)
from flowops.spec.load import EXPERIMENTS_DIR

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: "before" of a first push


def git(*args: str, cwd: str | Path = ".", env: dict | None = None) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return proc.stdout.strip()


def git_names(*args: str, cwd: str | Path = ".") -> list[str] | None:
    """The NUL-separated names a git command prints with -z (as they are: git C-quotes non-ASCII and
    quotes otherwise); None when git fails or a name is not UTF-8."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout.decode()
    except (OSError, UnicodeDecodeError, subprocess.CalledProcessError):
        return None
    return [name for name in out.split("\0") if name]


def code_tree(commit: str | None = None, repo: str | Path = ".", paths: tuple[str, ...] = CODE_PATHS) -> str | None:
    """Git tree hash of `paths` (the training code): at `commit`, or of the working tree (uncommitted
    changes included)."""
    if commit is None:
        # Stage the working tree into a throwaway index, so edits count but the real index is untouched.
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if git("read-tree", "HEAD", cwd=repo, env=env) is None:
                return None
            for path in paths:  # one at a time: a path that is nowhere must not stop the others
                git("add", "-A", "--", path, cwd=repo, env=env)
            commit = git("write-tree", cwd=repo, env=env)
    if not commit:
        return None
    try:  # -z: names as they are (no C-quoting of non-ASCII or quotes)
        listing = subprocess.run(
            ["git", "ls-tree", "-z", commit, "--", *paths], cwd=repo, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    entries = []
    for record in listing.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            entries.append((meta, name))
    return _mktree(entries, Path(repo))


WORKFLOW_PATHS = (".github",)  # how the PR stage trains: workflows and the local actions they use


def train_tree(commit: str, repo: str | Path, code_paths: tuple[str, ...]) -> str | None:
    """The training identity at `commit`: one tree of the training code and `.github`. A merged
    experiment ships only a run whose identity (recorded by the import stage from git) is the merged
    commit's: a run trained at an intermediate commit whose code or workflows differ is never it."""
    return code_tree(commit, repo=repo, paths=(*code_paths, *WORKFLOW_PATHS))


def _mktree(entries: list[tuple[bytes, bytes]], repo: Path) -> str | None:
    """The tree of `entries` ("MODE TYPE SHA", path), nested paths (src/model) as subtrees: a tree
    holding only the listed paths. For top-level paths this is git's own tree of that listing,
    so code trees of runs logged before nested paths were allowed stay the same."""
    direct: dict[bytes, bytes] = {}
    nested: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for meta, name in entries:
        head, slash, rest = name.partition(b"/")
        if slash:
            nested.setdefault(head, []).append((meta, rest))
        else:
            direct[name] = meta
    for head, inner in nested.items():
        if head in direct:  # the whole folder is listed too: it holds the nested path already
            continue
        sub = _mktree(inner, repo)
        if sub is None:
            return None
        direct[head] = f"040000 tree {sub}".encode()
    listing = b"".join(meta + b"\t" + name + b"\0" for name, meta in sorted(direct.items()))
    try:
        proc = subprocess.run(["git", "mktree", "-z"], cwd=repo, input=listing, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return proc.stdout.decode().strip() or None


def git_show(repo: Path, commit: str, path: str) -> str:
    text = git("show", f"{commit}:{path}", cwd=repo)
    if text is None:
        raise FlowopsError(f"{path}: not found at {commit[:12]}")
    return text + "\n"


def resolve_range(repo: Path, git_range: str) -> tuple[str, str]:
    """(before, after) commit ids of 'BEFORE..AFTER'; one-line errors for anything else."""
    if git("rev-parse", "--git-dir", cwd=repo) is None:
        raise FlowopsError(f"{repo}: not a git repository")
    before, sep, after = git_range.partition("..")
    if not sep or not before or not after or after.startswith("."):
        raise FlowopsError(f"--git-range {git_range!r}: expected BEFORE..AFTER (two commits)")
    resolved = []
    for index, ref in enumerate((before, after)):
        if set(ref) == {"0"}:  # GitHub's "before" of a branch's first push
            resolved.append(EMPTY_TREE)
            continue
        sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
        if not sha and index == 0 and _before_the_root(repo, ref):  # HEAD~1 of a first commit
            resolved.append(EMPTY_TREE)
            continue
        if not sha:
            raise FlowopsError(f"--git-range {git_range}: {ref!r} is not a commit in {repo}")
        resolved.append(sha)
    return resolved[0], resolved[1]


def _before_the_root(repo: Path, ref: str) -> bool:
    """Whether `ref` is a commit's ancestor beyond its root (X~N, X^): the start of history."""
    found = re.fullmatch(r"(.+?)(?:~\d*|\^+)+", ref)
    return (
        found is not None
        and git("rev-parse", "--verify", "--quiet", f"{found.group(1)}^{{commit}}", cwd=repo) is not None
    )


def changed_experiments(repo: Path, before: str, after: str) -> list[tuple[str, str]]:
    """(A|M|D, path) of experiment files between the two commits (the merge's net change)."""
    # A failed diff is never "nothing changed": replaying main would skip that merge. -z: names as
    # they are (git C-quotes non-ASCII and quotes otherwise, and the quoted name matches no file).
    try:
        out = subprocess.run(
            ["git", "diff", "-z", "--name-status", "--no-renames", before, after, "--", f"{EXPERIMENTS_DIR}/"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, UnicodeDecodeError, subprocess.CalledProcessError) as exc:  # (names not UTF-8 too)
        said = getattr(exc, "stderr", "") or str(exc)
        raise FlowopsError(
            f"{repo}: git diff {before[:12]}..{after[:12]} failed, so which experiments changed is unknown: "
            f"{said.strip().splitlines()[-1] if said.strip() else 'no output'}"
        ) from None
    fields = out.split("\0")
    rows = list(zip(fields[0:-1:2], fields[1::2], strict=False))
    return [(status[0], path) for status, path in rows if path.endswith((".yaml", ".yml"))]
