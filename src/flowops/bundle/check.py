"""Checks a run bundle from the untrusted PR stage before anything of it is imported.

The folder: only `bundle.json`, `artifacts/` and `model/`; plain files and folders (no
symbolic links, devices or pipes); every file listed with its size and sha256, nothing more
and nothing missing; sizes under the limits. The record: the schema. The lineage: the facts
the import stage works out itself (PR, head commit, code tree, experiment file, spec hash);
the bundle may repeat them but never differ, and the run's parameters must make exactly the
experiment file at the approved commit.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from flowops.bundle.evidence import check_evidence
from flowops.bundle.form import FOLDERS, LINEAGE, RECORD, Bundle, is_claim
from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.at_commit import code_paths_at, schema_at
from flowops.gitops.git import code_tree, git, git_show, train_tree
from flowops.hashing import sha256_file
from flowops.spec.schema import Schema
from flowops.tracking import TRAINER_TAGS


class BundleRefused(FlowopsError):
    """The bundle is not imported; the message names the file or field and the rule."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 2 << 30
    max_total_bytes: int = 8 << 30
    max_files: int = 10_000
    max_record_bytes: int = 256 << 20


@dataclass(frozen=True)
class Facts:
    """What the import stage knows without the bundle: from the event and from git."""

    pr_number: str
    head_sha: str
    code_tree: str
    experiment_file: str
    spec_sha256: str
    experiment_name: str
    schema: Schema = field(default_factory=Schema.default)  # how the experiment file at head_sha is read
    train_tree: str = ""  # the training identity at head_sha: the code tree and .github (gitops.git.train_tree)

    def tags(self) -> dict[str, str]:
        return {
            "flowops.train_tree": self.train_tree,
            "flowops.pr_number": self.pr_number,
            "flowops.git_commit": self.head_sha,
            "flowops.code_tree": self.code_tree,
            "flowops.code_dirty": "false",  # trained on a checkout of exactly this commit
            "flowops.experiment_file": self.experiment_file,
            "flowops.spec_sha256": self.spec_sha256,
            "mlflow.source.git.commit": self.head_sha,
        }


def facts_from_git(repo: Path, head_sha: str, experiment_file: str, pr_number: str) -> Facts:
    """The lineage of a PR run, from the base repository's git (never from the PR's files as run)."""
    sha = git("rev-parse", "--verify", "--quiet", f"{head_sha}^{{commit}}", cwd=repo)
    if not sha or not head_sha or sha != git("rev-parse", head_sha, cwd=repo):
        raise FlowopsError(f"--head-sha {head_sha}: not a commit in {repo} (fetch the PR head first)")
    if not pr_number.isdigit():
        raise FlowopsError(f"--pr {pr_number!r}: expected the pull request number")
    try:
        schema = schema_at(repo, sha)
        spec = schema.load(experiment_file, git_show(repo, sha, experiment_file))
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    paths = code_paths_at(schema, repo, sha)
    tree, identity = code_tree(sha, repo=repo, paths=paths), train_tree(sha, repo, paths)
    if not tree or not identity:
        raise FlowopsError(f"{repo}: no code tree at {sha[:12]}")
    return Facts(pr_number, sha, tree, experiment_file, spec.sha256(), spec.experiment_name, schema, identity)


def check_bundle(folder: Path, facts: Facts, limits: Limits = Limits()) -> Bundle:
    """The bundle's record, when the folder passes every check; BundleRefused naming the first failure."""
    found = _walk(folder, limits)
    record_path = folder / RECORD
    if RECORD not in found:
        raise BundleRefused(f"{folder}: no {RECORD}; not a run bundle")
    if found.pop(RECORD) > limits.max_record_bytes:
        raise BundleRefused(f"{record_path}: larger than {limits.max_record_bytes} bytes")
    try:
        bundle = Bundle.model_validate(json.loads(record_path.read_text()))
    except RecursionError:  # json.loads recurses once per level of nesting
        raise BundleRefused(f"{record_path}: nested too deeply; not a run bundle's record") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise BundleRefused(f"{record_path}: {where}: {error['msg']}") from None
        raise BundleRefused(f"{record_path}: not JSON ({exc})") from None
    _check_files(folder, bundle, found)
    spec = _check_lineage(record_path, bundle, facts)
    disagreement = check_evidence(folder, bundle, spec)
    if disagreement:
        raise BundleRefused(disagreement)
    return bundle


def _walk(folder: Path, limits: Limits) -> dict[str, int]:
    """relative path -> size of every plain file; refuses links, odd entries and anything over a limit."""
    if folder.is_symlink() or not folder.is_dir():
        raise BundleRefused(f"{folder}: not a folder")
    sizes: dict[str, int] = {}
    total = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            info = path.lstat()
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                raise BundleRefused(f"{folder}: {rel}: a symbolic link; a bundle holds plain files only")
            if root == str(folder) and name not in (RECORD, *FOLDERS):
                raise BundleRefused(f"{folder}: {rel}: not part of a run bundle ({RECORD}, {', '.join(FOLDERS)}/)")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise BundleRefused(f"{folder}: {rel}: not a plain file")
            if info.st_nlink > 1:  # another name of a file elsewhere (/etc/hostname, say): it would be imported
                raise BundleRefused(
                    f"{folder}: {rel}: a hard link ({info.st_nlink} names); a bundle holds files of its own only"
                )
            size = info.st_size
            if size > limits.max_file_bytes:
                raise BundleRefused(f"{folder}: {rel}: {size} bytes, over the limit of {limits.max_file_bytes}")
            total += size
            if total > limits.max_total_bytes:
                raise BundleRefused(f"{folder}: over {limits.max_total_bytes} bytes in all")
            sizes[rel] = size
            if len(sizes) > limits.max_files:
                raise BundleRefused(f"{folder}: more than {limits.max_files} files")
    return sizes


def _check_files(folder: Path, bundle: Bundle, found: dict[str, int]) -> None:
    record = folder / RECORD
    seen: dict[str, str] = {}
    for rel in bundle.files:
        parts = PurePosixPath(rel).parts
        if not parts or rel.startswith("/") or "\\" in rel or ".." in parts or "." in parts or parts[0] not in FOLDERS:
            raise BundleRefused(f"{record}: files: {rel!r}: a path must stay under {' or '.join(FOLDERS)}/")
        odd = next((c for c in rel if unicodedata.category(c) in ("Cc", "Cf")), None)
        if odd is not None:  # a line break forges log lines; U+202E and kin show another name than the file's
            raise BundleRefused(
                f"{record}: files: {rel!r}: a control or formatting character (U+{ord(odd):04X}) in a file name"
            )
        same = unicodedata.normalize("NFC", rel)
        if same in seen:  # two spellings of one name: which file a reader gets depends on the file system
            raise BundleRefused(f"{record}: files: {rel!r} and {seen[same]!r} are the same name in Unicode (NFC)")
        seen[same] = rel
    missing = sorted(set(bundle.files) - set(found))
    extra = sorted(set(found) - set(bundle.files))
    if missing:
        raise BundleRefused(f"{record}: files: {missing[0]!r} is listed but not in the bundle")
    if extra:
        raise BundleRefused(f"{folder}: {extra[0]}: in the bundle but not listed in {RECORD}")
    for rel, entry in bundle.files.items():
        if found[rel] != entry.size or sha256_file(folder / rel) != entry.sha256:
            raise BundleRefused(f"{folder}: {rel}: size or sha256 differs from {RECORD}")
    if bundle.status == "FINISHED" and (bundle.model is None or "model/MLmodel" not in bundle.files):
        raise BundleRefused(f"{record}: model: a FINISHED run must carry its model (model/MLmodel)")


def _check_lineage(record: Path, bundle: Bundle, facts: Facts) -> Any:
    """The experiment the bundle's parameters make, once they make exactly the approved file."""
    truth = facts.tags()
    for key, value in bundle.tags.items():
        if key in LINEAGE and value != truth[key]:
            raise BundleRefused(
                f"{record}: tags.{key}: {value!r} differs from {truth[key]!r} "
                "(lineage comes from the import stage's git and event, not from the bundle)"
            )
        if key.startswith("flowops.") and key not in LINEAGE and not is_claim(key) and key not in TRAINER_TAGS:
            raise BundleRefused(f"{record}: tags.{key}: not a tag a training run writes")
    if facts.schema.point is None:  # a template's trainer logs exactly its parameters
        plugin, template = facts.schema.plugin, facts.schema.config.schema_
        unknown = sorted(set(bundle.params) - plugin.parameters - plugin.extra_parameters)
        if unknown:
            raise BundleRefused(f"{record}: params.{unknown[0]}: not a parameter the {template} trainer logs")
    try:
        spec = facts.schema.from_params(bundle.params, bundle.run_name, facts.experiment_name)
    except FlowopsError as exc:
        raise BundleRefused(f"{record}: params: {exc}") from None
    if spec.sha256() != facts.spec_sha256:
        raise BundleRefused(
            f"{record}: params: they make spec sha256 {spec.sha256()[:12]}, but {facts.experiment_file} at "
            f"{facts.head_sha[:12]} is {facts.spec_sha256[:12]}"
        )
    if bundle.experiment_name != facts.experiment_name:
        raise BundleRefused(
            f"{record}: experiment_name: {bundle.experiment_name!r}, but {facts.experiment_file} says "
            f"{facts.experiment_name!r}"
        )
    return spec
