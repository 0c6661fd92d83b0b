"""The models holding the aliases, handed to the PR job so it scores them on the candidate's data.

`flowops holders export` runs in the trusted stage (it reads the registry); the PR job, which
holds no credential, gets the folder as a workflow artifact and `flowops train --holders DIR`
scores each model on the same validation images as the candidate (training.holders).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.spec.policy import RegistryPolicy

INDEX = "holders.json"


def export(
    registry: Any, policy: RegistryPolicy, out: Path, fork: bool, scored: bool = True
) -> dict[str, dict[str, str]]:
    """Write out/<alias>/ (the MLflow model) and out/holders.json; {} for a fork unless the policy shares,
    and {} when nothing would score them (`scored`: a project of its own names an evaluate entry point)."""
    import mlflow

    if out.exists() and any(out.iterdir()):
        raise FlowopsError(f"{out}: not empty; holders are exported to a new folder")
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, str]] = {}
    if not scored or (fork and not policy.share_holders_with_forks):
        (out / INDEX).write_text("{}\n")
        return index
    if registry.model_exists():
        for alias in policy.targets:
            mv = registry.holder(alias)
            if mv is None:
                continue
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{policy.model_name}/{mv.version}")
            shutil.copytree(path, out / alias)
            index[alias] = {"version": str(mv.version), "run_id": str(mv.run_id)}
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def holder_paths(registry: Any, policy: RegistryPolicy) -> dict[str, str]:
    """alias -> the experiment file its holder was merged from (the version's flowops.spec_path tag, which
    promote writes: a record of the trusted stage, not the run's word)."""
    if not registry.model_exists():
        return {}
    paths = {}
    for alias in policy.targets:
        mv = registry.holder(alias)
        if mv is not None and mv.tags.get("flowops.spec_path"):
            paths[alias] = mv.tags["flowops.spec_path"]
    return paths
