"""Holders scored on the candidate's own examples, for any MLflow Project.

A project may name an evaluation entry point in flowops.yaml (`evaluate: NAME`): it takes
`model_uri` and `output` (and any of the experiment's own parameters it declares, so it picks
the same validation examples) and writes the model's per-example evidence to `output`, in the
format of `evaluation/per_example.npz` (docs/comparison.md). After the training run succeeds,
`flowops train --holders DIR` runs it once per exported holder, the way segmentation's trainer
scores them (flowops.segmentation.training.holders), and logs on the candidate run: `holder.<alias>.<metric>`
(what the evidence makes), `evaluation/holder.<alias>.per_example.npz`, and the tags
`flowops.holder.<alias>[.version|.run_id]`. A holder whose examples are not the candidate's is not
scored, and the tag says why; a failed evaluation fails nothing else (no holder numbers: the
comparison falls back to the holder's own run, or says it cannot compare).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HOLDERS_ENV = "FLOWOPS_HOLDERS_DIR"  # the holders `flowops holders export` wrote, for any project


def score_holders(client: Any, project: Path, entry: str, params: dict[str, str], run_id: str) -> list[str]:
    """Score each holder in $FLOWOPS_HOLDERS_DIR with entry point `entry`; the aliases scored."""
    folder = os.environ.get(HOLDERS_ENV)
    if not folder:
        return []
    import numpy as np
    from mlflow.projects._project_spec import load_project

    from flowops.evaluation import evidence_in

    point = load_project(str(project)).get_entry_point(entry)
    mine = _own_evidence(client, run_id)
    index = json.loads((Path(folder) / "holders.json").read_text())
    scored = []
    for alias, entry_info in sorted(index.items()):
        tag = f"flowops.holder.{alias}"
        version = entry_info["version"]
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp) / f"holder.{alias}.per_example.npz"
            given = {k: v for k, v in params.items() if k in point.parameters}
            given |= {"model_uri": str(Path(folder) / alias), "output": str(output)}
            why = _run(point, given, project, tmp)
            if why is None:
                try:
                    with np.load(output, allow_pickle=False) as data:
                        found = evidence_in({k: data[k] for k in data.files}, f"the evaluation of v{version}")
                except (OSError, ValueError) as exc:
                    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                else:
                    if mine is None or any(e.ids != mine for e in found.values()) or not found:
                        why = "its examples are not the ones this run was evaluated on"
            if why is not None:
                client.set_tag(run_id, tag, f"v{version} not scored: {why}"[:500])
                print(f"flowops train: {alias} v{version} not scored: {why}", file=sys.stderr)
                continue
            from mlflow.entities import Metric

            metrics = [Metric(f"holder.{alias}.{m}", e.value(), 0, 0) for m, e in sorted(found.items())]
            client.log_batch(run_id, metrics=metrics)
            client.log_artifact(run_id, str(output), "evaluation")
            client.set_tag(run_id, f"{tag}.version", version)
            client.set_tag(run_id, f"{tag}.run_id", entry_info["run_id"])
            client.set_tag(run_id, tag, "scored")
            scored.append(alias)
    return scored


def _own_evidence(client: Any, run_id: str) -> tuple[str, ...] | None:
    """The example ids of the run's own evidence; None when it logged none."""
    import numpy as np

    from flowops.evaluation import evidence_in

    if "evaluation/per_example.npz" not in {a.path for a in client.list_artifacts(run_id, "evaluation")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "evaluation/per_example.npz", tmp)
        try:
            with np.load(path, allow_pickle=False) as data:
                found = evidence_in({k: data[k] for k in data.files}, "evaluation/per_example.npz")
        except (OSError, ValueError):  # malformed: nothing to pair the holders with (the import says why)
            return None
    return next(iter(found.values())).ids if found else None


def _run(point: Any, params: dict[str, str], project: Path, storage: str) -> str | None:
    """Run the entry point's command in the project folder; why it failed, or None."""
    from mlflow.exceptions import ExecutionException

    try:
        command = point.compute_command(params, storage)
    except ExecutionException as exc:
        return f"the evaluate entry point: {exc}"
    # Not inside the candidate's run: the entry point writes a file and logs nothing.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")}
    env.setdefault("FLOWOPS_PYTHON", sys.executable)
    done = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the evaluate entry point exited {done.returncode}: {last[:200]}"
    if not (Path(params["output"])).is_file():
        return f"the evaluate entry point wrote no {Path(params['output']).name}"
    return None
