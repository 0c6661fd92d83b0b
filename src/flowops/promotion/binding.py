"""Which run a merged experiment file ships: bound by facts the trusted stage recorded, not by search.

A tag is a claim anyone who can log a run can copy; a run's times, commit and order are the
trainer's word. What the import stage wrote from git and the event is a record: the commit it
imported the run for (the event's approved head), the training identity at that commit (the code
tree and `.github`, from git) and the time of the import, by its own clock.

A run qualifies for a merged file only if (a) the spec rebuilt from its logged parameters hashes to
the merged file's spec hash, (b) its `flowops.spec_sha256` tag agrees, (c) the model it logged names
this run as its source (a model linked from another run proves nothing: `MlflowClient.log_outputs`
links anything), and (d) the import stage recorded it, at a commit whose training identity equals
the merged commit's: a run trained at an intermediate commit of the PR, or on code that main changed
since, is not what was merged. Among the runs that qualify the earliest import wins, so nothing
imported or logged later (a re-run, a hand-logged run, the next fifty runs) changes what an old
merge binds; every run with the spec hash is read (pages, no window). Runs nobody imported ship
only where the policy says `ship_hand_logged_runs` (by default on the embedded store alone), judged
by their own tags, after every imported run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.gitops.git import WORKFLOW_PATHS, git
from flowops.spec.schema import Schema

MODEL_NAME = "model"  # the name training logs its model under, unless flowops.yaml says `model:`
IMPORTED_TAG = "flowops.imported"  # the import stage's mark: "run bundle of PR #<n> at <sha>"
IMPORTED_AT_TAG = "flowops.imported_at"  # milliseconds, by the import stage's clock (never the bundle's times)
TRAIN_TREE_TAG = "flowops.train_tree"  # the training identity at the imported commit, from git
PAGE = 1000


@dataclass
class Bound:
    """The run a merged file ships, its model and why it was chosen."""

    run: Any
    model_id: str
    why: str


@dataclass(frozen=True)
class Merged:
    """What a merge on main is, for binding: its commit, code tree and training identity."""

    commit: str
    code_tree: str | None
    train_tree: str | None
    code_paths: tuple[str, ...] = ()


class NotBound(FlowopsError):
    """No run qualifies for a merged experiment file; the message says why (the field that differs)."""


def imported_at(run: Any) -> int | None:
    """When the import stage recorded `run` (ms), or None for a run it did not record."""
    tags = run.data.tags
    if not tags.get(IMPORTED_TAG) or not tags.get(TRAIN_TREE_TAG):
        return None
    try:
        return int(tags.get(IMPORTED_AT_TAG, ""))
    except ValueError:
        return None


def refusal(
    client: Any,
    run: Any,
    spec: Any,
    merged_tree: str | None,
    same_code: bool,
    schema: Schema | None = None,
    models: dict[str, str] | None = None,
) -> str | None:
    """Why `run` may not ship `spec` by its own record (one phrase naming the field), or None when
    its parameters, tags and model make it; `same_code` also asks its code tree tag to be `merged_tree`.
    `models` receives the run's logged model as read (run id -> `logged_model`'s answer), so a bind
    reads it once."""
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
    if models is not None:
        models[run.info.run_id] = found
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
    merged: Merged,
    same_code: bool,
    hand_logged: bool,
    repo: Path,
    schema: Schema | None = None,
) -> Bound:
    """The run that ships `spec` at the merge `merged`; NotBound naming what differs when none qualifies."""
    schema = schema or Schema.default()
    runs = candidates(client, spec)
    if not runs:
        raise NotBound(f"no FINISHED run with spec sha256 {spec.sha256()[:12]}: open a PR to train it")
    imported = sorted((r for r in runs if imported_at(r) is not None), key=lambda r: (imported_at(r), r.info.run_id))
    by_hand = sorted((r for r in runs if imported_at(r) is None), key=lambda r: (r.info.start_time, r.info.run_id))
    qualified, refused = [], []
    models: dict[str, str] = {}  # each run's logged model, read once
    for run in imported:
        reason = refusal(client, run, spec, merged.code_tree, False, schema, models) or _identity(run, merged, repo)
        (refused.append(f"run {run.info.run_id[:8]}: {reason}") if reason else qualified.append(run))
    for run in by_hand:
        reason = (
            refusal(client, run, spec, merged.code_tree, same_code, schema, models)
            if hand_logged
            else "no import record: it was logged outside the PR pipeline (the policy ships such runs only with "
            "ship_hand_logged_runs: true)"
        )
        (refused.append(f"run {run.info.run_id[:8]}: {reason}") if reason else qualified.append(run))
    if not qualified:
        more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
        raise NotBound(f"no run qualifies: {refused[0]}{more}")
    chosen = qualified[0]
    if imported_at(chosen) is not None:
        why = f"the earliest import of the merged code ({chosen.data.tags[IMPORTED_TAG]})"
    else:
        why = "logged by hand (no import record; the policy ships such runs), the earliest that qualifies"
    if len(qualified) > 1:
        why += f"; {len(qualified) - 1} other run(s) also qualified"
    if refused:
        why += f"; {len(refused)} refused ({refused[0]})"
    model = models.get(chosen.info.run_id) or logged_model(client, chosen, schema.model)
    return Bound(chosen, model, why)


def candidates(client: Any, spec: Any) -> list[Any]:
    """Every FINISHED run of the experiment whose spec hash tag is `spec`'s, page by page."""
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return []
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            max_results=PAGE,
            order_by=["attributes.start_time ASC"],
            filter_string=f"tags.`flowops.spec_sha256` = '{spec.sha256()}' and attributes.status = 'FINISHED'",
            page_token=token,
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def _identity(run: Any, merged: Merged, repo: Path) -> str | None:
    """Why an imported run's training identity is not the merged commit's, or None when it is."""
    if run.data.tags.get(TRAIN_TREE_TAG) == merged.train_tree:
        return None
    trained = run.data.tags.get("flowops.git_commit", "?")
    paths = (*merged.code_paths, *WORKFLOW_PATHS)
    diff = git("diff", "--name-only", trained, merged.commit, "--", *paths, cwd=repo) if paths else None
    where = f" (first difference: {diff.splitlines()[0]})" if diff else ""
    return (
        f"imported at {trained[:12]}, whose code and workflows are not the merged commit's{where}: the merged "
        "code was never trained; to ship it, open a PR that touches this experiment file (its description will "
        "do): it trains on main's code, and its merge ships that run"
    )


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else repr(value)
