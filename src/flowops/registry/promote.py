"""`flowops promote`: turn a merge into registry changes that follow the policy.

A merge is linked to its run by the run's own record (`flowops.registry.binding`): the spec
rebuilt from the run's parameters, its tag, its model and its code must all agree with the
merged file, so merge commits, squash merges and fast-forwards all work and a copied tag is not
enough. Applying the same range twice changes nothing the second time.

Exit codes (`flowops promote --help`): 0 when every merged experiment was applied or kept out
by the policy on purpose; 1 when one was refused (not trained, no qualifying run, invalid, no
permission), with nothing moved for it; 2 for a bug. A candidate that no alias accepts is still
registered, tagged `flowops.status=rejected` with the reasons, so the registry shows every
merged model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.git import changed_experiments, code_tree, git, git_show, resolve_range
from flowops.registry.binding import NotBound, bind
from flowops.registry.decide import Candidate, Holder, TargetDecision, decide, rank
from flowops.registry.store import AuditRecord, Registry, actor, tracking_user
from flowops.spec.load import POLICY_FILE, load_experiment, load_policy, policy_or_error
from flowops.spec.policy import RegistryPolicy

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class Item:
    """One merged experiment file and what became of it."""

    path: str
    status: str  # changed | deleted | not trained | invalid
    message: str = ""
    run: Any = None  # the mlflow Run, for status 'changed'
    model_id: str = ""  # the logged model it ships
    version: str | None = None
    created: bool = False
    candidate: Candidate | None = None


@dataclass
class Outcome:
    items: list[Item] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # what changed, one line each
    decisions: dict[str, list[tuple[str, TargetDecision]]] = field(default_factory=dict)  # alias -> (path, decision)
    errors: list[str] = field(default_factory=list)


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


def gather(
    client: MlflowClient,
    repo: Path,
    entries: list[tuple[str, str, str | None]],
    merged: tuple[str, str | None],
    policy: RegistryPolicy,
) -> list[Item]:
    """Per experiment file, the run it ships (read only); `merged` is (merge commit, merged code tree)."""
    commit, merged_tree = merged
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
        try:
            bound = bind(client, spec, merged_tree, policy.require_same_code, repo, commit)
        except NotBound as exc:
            items.append(Item(path, "not trained", str(exc)))
            continue
        run = bound.run
        candidate = Candidate(
            f"run {run.info.run_id[:8]}", dict(run.data.metrics), run.data.tags.get("flowops.code_tree"), merged_tree
        )
        items.append(Item(path, "changed", bound.why, run=run, model_id=bound.model_id, candidate=candidate))
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
    create_model: bool = False,
) -> Outcome:
    """Register the merged experiments' models and move aliases as the policy decides.

    The registered model must exist unless `create_model` (first set-up, the embedded store).
    """
    after, policy, merged_tree, entries = (
        merged_files(repo, git_range) if git_range else working_files(repo, files or [])
    )
    items = gather(client, repo, entries, (after, merged_tree), policy)
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
        registry.ensure_model(create_model)
        registry.holders(policy.targets)  # aliases that cannot be read stop us before anything is registered
        for item in live:
            mv, item.created = registry.register(item.run, item.model_id, version_tags(item, after))
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
    _mark_rejected(registry, live, outcome)
    return outcome


def _mark_rejected(registry: Registry, live: list[Item], outcome: Outcome) -> None:
    """A merged candidate that no alias took is registered but tagged rejected, with the reasons."""
    for item in live:
        rows = [(alias, td) for alias, pairs in outcome.decisions.items() for path, td in pairs if path == item.path]
        if item.version is None or any(td.promote for _, td in rows):
            continue
        current = registry.version(item.version)
        if current is not None and current.aliases:  # it holds an alias from an earlier promote: keep it
            continue
        reasons = "; ".join(f"{alias}: {c.detail}" for alias, td in rows for c in td.checks if not c.passed)
        registry.client.set_model_version_tag(registry.name, item.version, "flowops.status", "rejected")
        registry.client.set_model_version_tag(registry.name, item.version, "flowops.rejected", reasons[:5000])
        outcome.moves.append(f"{item.path}: v{item.version} kept out by the policy (tagged rejected): {reasons}")


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
                user=tracking_user(),
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
