"""Facts about where a run came from: git, the PR, the machine, the library versions.

Light on purpose (no TensorFlow, no MLflow): recorded as `flowops.*` tags on every training run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from flowops.gitops.git import CODE_PATHS, code_tree, git

TAG = "flowops."


def pull_request_number(environ: Mapping[str, str] | None = None) -> str | None:
    """The PR number from GitHub Actions variables (event payload, or refs/pull/N/merge)."""
    env = os.environ if environ is None else environ
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            number = json.loads(Path(event_path).read_text()).get("pull_request", {}).get("number")
        except (ValueError, AttributeError):
            number = None
        if number:
            return str(number)
    ref = env.get("GITHUB_REF", "")
    if ref.startswith("refs/pull/"):
        return ref.split("/")[2]
    return None


def hardware() -> str:
    """CPU model and core count, plus the GPUs nvidia-smi lists."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu} x{os.cpu_count()}"
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        gpus = [g.strip() for g in proc.stdout.splitlines() if g.strip()] if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        gpus = []
    return desc + (f"; GPU: {', '.join(gpus)}" if gpus else "; no GPU")


SEGMENTATION_PACKAGES = ("tensorflow", "tf-keras", "segmentation-models", "mlflow", "numpy")


def project_packages(repo: str | Path = ".") -> tuple[str, ...]:
    """The packages a project's environment names (requirements.txt, python_env.yaml, conda.yaml's pip
    list), for `flowops.versions`: its own libraries, not flowops' TensorFlow."""
    import re

    from flowops.spec.environment import requirements

    names = []
    for line in requirements(Path(repo)).lines:
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if found and found.group(1).lower() not in ("python", "pip"):
            names.append(found.group(1))
    return tuple(dict.fromkeys(["mlflow", *names]))


def versions(packages: tuple[str, ...] = SEGMENTATION_PACKAGES) -> str:
    """The versions of flowops and `packages` installed here (the ones that are)."""
    from flowops import DISTRIBUTION

    found = []
    for dist in dict.fromkeys((DISTRIBUTION, *packages)):
        try:
            found.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return f"python=={platform.python_version()} " + " ".join(found)


def run_tags(
    spec_sha256: str,
    experiment_file: str,
    dataset_fingerprint: str | None,
    repo: str | Path = ".",
    paths: tuple[str, ...] = CODE_PATHS,
    packages: tuple[str, ...] = SEGMENTATION_PACKAGES,
) -> dict[str, str]:
    """Every lineage tag of a training run (keys under `flowops.`); `paths` are the training code,
    `packages` the libraries whose versions it records."""
    env = os.environ
    commit = git("rev-parse", "HEAD", cwd=repo)
    dirty = git("status", "--porcelain", "--", *paths, cwd=repo)
    branch = (
        env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo)
    )
    tags = {
        "experiment_file": experiment_file or "(none: run with mlflow run -P)",
        "spec_sha256": spec_sha256,
        "git_commit": commit or "unknown",
        "code_tree": code_tree(repo=repo, paths=paths) or "unknown",
        "code_dirty": "false" if dirty == "" else "true",  # git status failed (None): not known clean
        "git_branch": branch or "unknown",
        "hardware": hardware(),
        "versions": versions(packages),
    }
    if dataset_fingerprint is not None:  # a project of its own reads its data itself
        tags["dataset_fingerprint"] = dataset_fingerprint
    pr = pull_request_number()
    if pr:
        tags["pr_number"] = pr
    return {TAG + k: v for k, v in tags.items()}
