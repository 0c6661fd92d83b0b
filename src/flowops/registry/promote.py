"""`flowops promote`: turn a merge into registry changes that follow the policy.

A merge is linked to its run by content: the sha256 of each merged experiment spec, not
the commit message, so merge commits, squash merges and fast-forwards all work. Applying
the same range twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.git import changed_experiments, code_tree, git, git_show, resolve_range
from flowops.registry.decide import Candidate, Holder, TargetDecision, decide, rank
from flowops.registry.store import AuditRecord, Registry, actor
from flowops.spec.load import POLICY_FILE, load_experiment, load_policy, policy_or_error
from flowops.spec.policy import RegistryPolicy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from flowops.spec.experiment import ExperimentSpec


@dataclass
class Item:
    """One merged experiment file and what became of it."""

    path: str
    status: str  # changed | deleted | not trained | invalid
    message: str = ""
    run: Any = None  # the mlflow Run, for status 'changed'
    version: str | None = None
    created: bool = False
    candidate: Candidate | None = None


@dataclass
class Outcome:
    items: list[Item] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # what changed, one line each
    decisions: dict[str, list[tuple[str, TargetDecision]]] = field(default_factory=dict)  # alias -> (path, decision)
    errors: list[str] = field(default_factory=list)


def find_run(client: MlflowClient, spec: ExperimentSpec) -> Run | None:
    """The latest FINISHED run whose spec sha256 equals this spec's."""
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        max_results=1,
        order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`flowops.spec_sha256` = '{spec.sha256()}' and attributes.status = 'FINISHED'",
    )
    return runs[0] if runs else None


def merged_files(
    repo: Path, git_range: str
) -> tuple[str, RegistryPolicy, str | None, list[tuple[str, str, str | None]]]:
    """For a range: (after commit, its policy, its code tree, [(A|M|D, path, text at after)])."""
    before, after = resolve_range(repo, git_range)
    policy = load_policy_text(repo, after)
    entries = [
        (status, path, None if status == "D" else git_show(repo, after, path))
        for status, path in changed_experiments(repo, before, after)
    ]
    return after, policy, code_tree(after, repo=repo), entries


def working_files(
    repo: Path, files: list[str]
) -> tuple[str, RegistryPolicy, str | None, list[tuple[str, str, str | None]]]:
    """For --experiment files: the working tree stands in for the merge."""
    policy = policy_or_error(repo / POLICY_FILE)
    head = git("rev-parse", "HEAD", cwd=repo) or "working-tree"
    return head, policy, code_tree(repo=repo), [("M", f, None) for f in files]


def gather(client: MlflowClient, entries: list[tuple[str, str, str | None]], merged_tree: str | None) -> list[Item]:
    """Per experiment file, its run (read only)."""
    items = []
    for status, path, text in entries:
        if status == "D":
            items.append(Item(path, "deleted", "deleted in this merge: nothing to promote"))
            continue
        try:
            spec = load_experiment(path, text)
        except ProblemsError as exc:
            items.append(Item(path, "invalid", str(exc.problems[0])))
            continue
        run = find_run(client, spec)
        if run is None:
            items.append(
                Item(
                    path, "not trained", f"no FINISHED run with spec sha256 {spec.sha256()[:12]}: open a PR to train it"
                )
            )
            continue
        tags = run.data.tags
        candidate = Candidate(
            f"run {run.info.run_id[:8]}", dict(run.data.metrics), tags.get("flowops.code_tree"), merged_tree
        )
        items.append(Item(path, "changed", run=run, candidate=candidate))
    return items


def load_policy_text(repo: Path, commit: str) -> RegistryPolicy:
    """The policy as committed at `commit` (what the merge says, not the working tree)."""
    try:
        return load_policy(POLICY_FILE, git_show(repo, commit, POLICY_FILE))
    except ProblemsError as exc:
        raise FlowopsError(
            f"{POLICY_FILE} at {commit[:12]} is invalid: {str(exc.problems[0]).split(': ', 1)[1]}"
        ) from None


def promote(
    client: MlflowClient,
    repo: Path,
    git_range: str | None = None,
    files: list[str] | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Register the merged experiments' models and move aliases as the policy decides."""
    after, policy, merged_tree, entries = (
        merged_files(repo, git_range) if git_range else working_files(repo, files or [])
    )
    items = gather(client, entries, merged_tree)
    outcome = Outcome(items=items)
    outcome.errors = [f"{i.path}: {i.message}" for i in items if i.status in ("not trained", "invalid")]
    live = [i for i in items if i.status == "changed"]
    if policy.mode == "disabled" or not live:
        outcome.moves.append(
            "promotion is disabled by the policy"
            if policy.mode == "disabled"
            else "no trained experiment in this merge"
        )
        return outcome
    dry_run = dry_run or policy.mode == "dry_run"
    registry = Registry(client, policy.model_name)
    if not dry_run:
        registry.ensure_model()
        for item in live:
            mv, item.created = registry.register(item.run, version_tags(item, after))
            item.version = str(mv.version)
            cand = _candidate(item)
            item.candidate = Candidate(f"v{mv.version}", cand.metrics, cand.code_tree, cand.merged_code_tree)
    if dry_run:
        if registry.model_exists():  # report versions that exist already, change nothing
            for item in live:
                mv = registry.version_for_run(item.run.info.run_id)
                item.version = str(mv.version) if mv else None
        _decide_all(registry, policy, live, outcome, apply=False, commit=after)
        return outcome
    with registry.exclusive():
        _decide_all(registry, policy, live, outcome, apply=True, commit=after)
    return outcome


def _decide_all(
    registry: Registry, policy: RegistryPolicy, live: list[Item], outcome: Outcome, apply: bool, commit: str
) -> None:
    # Holders are read inside the queue, right before moving, so a promote that ran
    # meanwhile is decided against, not overwritten.
    holders: dict[str, Holder | None] = (
        registry.holders(policy.targets) if registry.model_exists() else dict.fromkeys(policy.targets)
    )
    by_candidate = {item.path: decide(_candidate(item), holders, policy) for item in live}
    for alias in policy.targets:
        outcome.decisions[alias] = [(item.path, by_candidate[item.path].targets[alias]) for item in live]
        holder = holders[alias]
        already = [i for i in live if holder and i.version == holder.version]
        if already and holder is not None:
            outcome.moves.append(f"{alias}: v{holder.version} ({already[0].path}) already holds it; nothing to do")
            continue
        passing = [i for i in live if by_candidate[i.path].targets[alias].promote]
        if not passing:
            outcome.moves.append(f"{alias}: stays at {_v(holder)}")
            continue
        item_of = {id(i.candidate): i for i in passing}
        best = item_of[id(rank([_candidate(i) for i in passing], policy)[0])]
        others = [i.path for i in passing if i is not best]
        target_version = best.version or "(new version)"
        note = f" (also qualified, ranked lower: {', '.join(others)})" if others else ""
        if apply and best.version is not None:
            decision = by_candidate[best.path].targets[alias]
            record = AuditRecord(
                alias,
                holder.version if holder else None,
                best.version,
                "promote",
                _now(),
                actor(),
                best.run.data.tags.get("flowops.pr_number"),
                commit,
                policy.sha256(),
                _checks_summary(decision),
            )
            registry.move(alias, best.version, record, policy.legacy_stages, policy.archive_previous)
        verb = "moved" if apply else "would move"
        outcome.moves.append(f"{alias}: {verb} {_v(holder)} -> v{target_version} ({best.path}){note}")


def _candidate(item: Item) -> Candidate:
    if item.candidate is None:
        raise FlowopsError(f"{item.path}: no candidate run (this is a bug in flowops)")
    return item.candidate


def _v(holder: Holder | None) -> str:
    return f"v{holder.version}" if holder else "unset"


def _now() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _checks_summary(decision: TargetDecision) -> str:
    return "; ".join(f"{'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks) or "no checks"


def version_tags(item: Item, commit: str) -> dict[str, str]:
    """Everything a version needs to explain itself: its run's lineage and the merge."""
    tags = {k: v for k, v in item.run.data.tags.items() if k.startswith("flowops.") and k != "flowops.experiment_file"}
    tags.update(
        {"flowops.spec_path": item.path, "flowops.merge_commit": commit, "flowops.run_id": item.run.info.run_id}
    )
    return tags
