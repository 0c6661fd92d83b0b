"""Which run a merged experiment file ships: bound by the run's own record, not by one tag.

A tag is a claim anyone who can log a run can copy. A run qualifies for a merged file only if
(a) the spec rebuilt from its logged parameters hashes to the merged file's spec hash, (b) its
`flowops.spec_sha256` tag agrees, (c) the model it logged names this run as its source (a model
linked from another run proves nothing: `MlflowClient.log_outputs` links anything), and (d) when
the policy requires the same code, it was trained on a clean tree equal to the merged code.
Among the runs that qualify, the one trained for the merged PR (its commit is an ancestor of the
merge) wins, then the newest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.gitops.git import git
from flowops.spec.schema import Schema

MODEL_NAME = "model"  # the name training logs its model under, unless flowops.yaml says `model:`
MAX_CANDIDATES = 50  # FINISHED runs with the same spec hash looked at, newest first


@dataclass
class Bound:
    """The run a merged file ships, its model and why it was chosen."""

    run: Any
    model_id: str
    why: str


class NotBound(FlowopsError):
    """No run qualifies for a merged experiment file; the message says why (the field that differs)."""


def refusal(
    client: Any, run: Any, spec: Any, merged_tree: str | None, same_code: bool, schema: Schema | None = None
) -> str | None:
    """Why `run` may not ship `spec` (one phrase naming the field), or None when it qualifies."""
    schema = schema or Schema.default()
    try:
        rebuilt = schema.from_run(run, spec.experiment_name)
    except FlowopsError as exc:
        return f"its logged parameters do not make this experiment: {exc}"
    if rebuilt.sha256() != spec.sha256():
        ran, merged = rebuilt.normalised(), spec.normalised()
        key = next((k for k in merged if ran.get(k) != merged.get(k)), "?")
        return f"{key}: the run was trained with {_show(ran.get(key))}, the merged file says {_show(merged.get(key))}"
    if run.data.tags.get("flowops.spec_sha256") != spec.sha256():
        return "its flowops.spec_sha256 tag does not match its own parameters"
    if same_code:
        if run.data.tags.get("flowops.code_dirty") != "false":
            return "it was trained on uncommitted code (flowops.code_dirty is not false)"
        if run.data.tags.get("flowops.code_tree") != merged_tree:
            return (
                f"code tree {str(run.data.tags.get('flowops.code_tree'))[:12]} is not the merged code "
                f"{str(merged_tree)[:12]}: retrain on the merged code"
            )
    found = logged_model(client, run, schema.model)
    if isinstance(found, str) and found.startswith("model:"):
        return found
    return None


def logged_model(client: Any, run: Any, name: str = MODEL_NAME) -> str:
    """The id of the model `run` logged as its own under `name`, or 'model: <why not>'."""
    outputs = sorted((run.outputs.model_outputs if run.outputs else []), key=lambda o: o.step)
    for output in reversed(outputs):
        model = client.get_logged_model(output.model_id)
        if model.name != name:
            continue
        if model.source_run_id != run.info.run_id:
            return f"model: {output.model_id} was logged by run {model.source_run_id}, not by this run"
        return str(output.model_id)
    return f"model: the run has no logged model {name!r} (it did not finish training; retrain it)"


def bind(
    client: Any,
    spec: Any,
    merged_tree: str | None,
    same_code: bool,
    repo: Path,
    merge_commit: str,
    schema: Schema | None = None,
) -> Bound:
    """The run that ships `spec`; NotBound naming what differs when none qualifies."""
    experiment = client.get_experiment_by_name(spec.experiment_name)
    runs = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            max_results=MAX_CANDIDATES,
            order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`flowops.spec_sha256` = '{spec.sha256()}' and attributes.status = 'FINISHED'",
        )
    if not runs:
        raise NotBound(f"no FINISHED run with spec sha256 {spec.sha256()[:12]}: open a PR to train it")
    qualified, refused = [], []
    for run in runs:
        reason = refusal(client, run, spec, merged_tree, same_code, schema)
        if reason is None:
            qualified.append(run)
        else:
            refused.append(f"run {run.info.run_id[:8]}: {reason}")
    if not qualified:
        more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
        raise NotBound(f"no run qualifies: {refused[0]}{more}")
    in_merge = [r for r in qualified if _ancestor(repo, r.data.tags.get("flowops.git_commit"), merge_commit)]
    chosen = (in_merge or qualified)[0]
    why = (
        "trained for this merge"
        if in_merge
        else "the newest qualifying run (none was trained on a commit of this merge)"
    )
    if len(qualified) > 1:
        why += f"; {len(qualified) - 1} other run(s) also qualified"
    if refused:
        why += f"; {len(refused)} refused ({refused[0]})"
    return Bound(chosen, logged_model(client, chosen, (schema or Schema.default()).model), why)


def _ancestor(repo: Path, commit: str | None, merge_commit: str) -> bool:
    if not commit or len(commit) < 7:
        return False
    return git("merge-base", "--is-ancestor", commit, merge_commit, cwd=repo) is not None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else repr(value)
