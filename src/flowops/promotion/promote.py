"""`flowops promote`: reconcile the registry to what main asks for.

Git is the desired state. `desired.replay` decides every merge on main's first-parent history
(the policy committed at each merge, runs bound by their own record), so the holder each alias
should have is a pure function of main; promote compares it with the registry and applies only
the difference. A push whose promote job was cancelled loses nothing (the next run replays its
merge), a re-run of an old job moves nothing backwards (the registry remembers the newest main
commit it was reconciled to), and a `git revert` is a rollback. A break-glass `flowops rollback`
holds its alias: reconciliation leaves it alone and reports the drift.

`--git-range BEFORE..AFTER` names the push: AFTER is the commit reconciled to, and the merges in
the range are the ones reported. Exit codes (`flowops promote --help`): 0 when every merged
experiment in the range was applied or kept out by the policy on purpose (a kept-out version is
registered and tagged `flowops.status=rejected` with the reasons); 1 when one was refused (not
trained, no qualifying run, invalid, the registry failed or denied a call), with nothing moved
for it; 2 for a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops.errors import FlowopsError
from flowops.gitops.git import git, resolve_range
from flowops.promotion import evidence
from flowops.promotion.decide import TargetDecision
from flowops.promotion.desired import Desired, Item, Step, first_parent_commits, policy_at, replay
from flowops.registry.store import AuditRecord, Registry, actor, describe_hold, tracking_user

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class Outcome:
    items: list[Item] = field(default_factory=list)  # the experiment files of the merges in the range
    moves: list[str] = field(default_factory=list)  # what changed (or would), one line each
    decisions: dict[str, list[tuple[str, TargetDecision]]] = field(default_factory=dict)  # alias -> (path, decision)
    errors: list[str] = field(default_factory=list)


def promote(
    client: MlflowClient,
    repo: Path,
    git_range: str,
    dry_run: bool = False,
    create_model: bool = False,
) -> Outcome:
    """Reconcile the registry to main at AFTER of `git_range`; report the merges in the range.

    The registered model must exist unless `create_model` (first set-up, the embedded store).
    """
    before, tip = resolve_range(repo, git_range)
    policy = policy_at(repo, tip)
    if isinstance(policy, str):
        raise FlowopsError(policy)
    registry = Registry(client, policy.model_name)
    outcome = Outcome()
    if _behind(registry, repo, tip, outcome):
        return outcome
    labels: dict[str, str] = {}
    exists = registry.model_exists()

    def label(run_id: str) -> str:
        if run_id not in labels:
            mv = registry.version_for_run(run_id) if exists else None
            labels[run_id] = str(mv.version) if mv else f"run {run_id[:8]}"
        return labels[run_id]

    desired = replay(client, repo, tip, policy, label)
    scope = _in_range(repo, before, tip, desired.steps)
    outcome.items = [i for step in scope for i in step.items]
    # A rebase or fast-forward merge lands each of a PR's commits on main: a state of a file that a
    # later commit of this push changes again never reached the tip, and nothing ships it either way.
    last = {i.path: step.commit for step in scope for i in step.items}
    for item in outcome.items:
        if item.status in ("not trained", "invalid") and last[item.path] != item.commit:
            item.status, item.message = (
                "superseded",
                (
                    f"its state at {item.commit[:12]} ({item.status}) was changed again by {last[item.path][:12]} "
                    "in this push: it never reached main's tip and nothing ships it"
                ),
            )
    outcome.errors = [f"{i.path}: {i.message}" for i in outcome.items if i.status in ("not trained", "invalid")]
    outcome.errors += [f"{step.commit[:12]}: {step.skipped}" for step in scope if step.skipped]
    for step in scope:
        for alias, rows in step.decisions.items():
            outcome.decisions.setdefault(alias, []).extend(rows)
    if policy.mode == "disabled":
        outcome.moves.append("promotion is disabled by the policy")
        return outcome
    dry_run = dry_run or policy.mode == "dry_run"
    live = [i for i in outcome.items if i.status == "changed"]
    if not live:
        outcome.moves.append("no trained experiment in this merge")
        if not any(desired.holders.values()):
            return outcome  # main asks for nothing yet: nothing to create or move
    if not dry_run:
        registry.ensure_model(create_model)
        evidence.current_holders(
            registry, policy.targets
        )  # aliases that cannot be read stop us before anything is registered
        with registry.exclusive():
            if _behind(registry, repo, tip, outcome):  # checked again: another promote may have gone first
                return outcome
            for line in registry.repair():
                outcome.moves.append(f"journal: {line}")
            wanted = [h for h in desired.holders.values() if h is not None and all(h is not i for i in live)]
            for item in [*live, *wanted]:
                mv, item.created = registry.register(item.run, item.model_id, version_tags(item))
                item.version = str(mv.version)
            _apply(registry, desired, scope, outcome)
            applied = registry.applied_commit()
            if not applied or _is_ancestor(repo, applied, tip):
                registry.set_applied_commit(tip)
        _mark_rejected(registry, live, outcome)
        return outcome
    for item in live:  # report versions that exist already, change nothing
        known = label(item.run.info.run_id)
        item.version = None if known.startswith("run ") else known
    _plan(registry if exists else None, desired, scope, outcome, label)
    return outcome


def _apply(registry: Registry, desired: Desired, scope: list[Step], outcome: Outcome) -> None:
    """Move each alias to the version main asks for, unless a break-glass hold keeps it."""
    holds = registry.holds()
    actual = {alias: registry.holder(alias) for alias in desired.policy.targets}
    for alias in desired.policy.targets:
        want, have = desired.holders.get(alias), actual[alias]
        have_v = str(have.version) if have is not None else None
        if want is None or want.version is None:
            outcome.moves.append(f"{alias}: stays at {_v(have_v)}" + (" (main names no holder)" if have_v else ""))
            continue
        hold = holds.get(alias)
        if hold is not None and hold.get("version") != want.version:
            outcome.moves.append(f"{alias}: {describe_hold(alias, hold)}; main wants v{want.version} ({want.path})")
            continue
        if hold is not None:
            registry.release(alias)
            outcome.moves.append(f"{alias}: main now agrees with the hold at v{want.version}: hold released")
        if have_v == want.version:
            decided_here = any(want.commit == step.commit for step in scope)
            outcome.moves.append(
                f"{alias}: v{want.version} ({want.path}) already holds it; nothing to do"
                if decided_here
                else f"{alias}: stays at v{want.version}"
            )
            continue
        kind, commit, change = desired.reasons.get(alias, ("promote", desired.tip, ""))
        note = next((s.notes.get(alias, "") for s in scope if s.commit == want.commit), "")
        record = AuditRecord(
            alias,
            have_v,
            want.version,
            kind,
            _now(),
            actor(),
            want.run.data.tags.get("flowops.pr_number"),
            commit,
            desired.policy.sha256(),
            _summary(alias, want, desired, kind, commit, change),
            user=tracking_user(),
        )
        registry.move(alias, want.version, record, desired.policy.legacy_stages, desired.policy.archive_previous)
        why = {
            "revert": f" (revert at {commit[:12]}: {change})",
            "restore": f" (restored at {commit[:12]}: {change})",
        }.get(kind, note)
        outcome.moves.append(f"{alias}: moved {_v(have_v)} -> v{want.version} ({want.path}){why}")
    outcome.moves += [f"{alias}: {why}" for alias, why in desired.older_code.items()]


def _plan(registry: Registry | None, desired: Desired, scope: list[Step], outcome: Outcome, label: Any) -> None:
    """What _apply would do (dry run): nothing is written."""
    holds = registry.holds() if registry else {}
    for alias in desired.policy.targets:
        have = registry.holder(alias) if registry else None
        have_v = str(have.version) if have is not None else None
        want = desired.holders.get(alias)
        if want is None:
            outcome.moves.append(f"{alias}: stays at {_v(have_v)}")
            continue
        known = label(want.run.info.run_id)
        target = "(new version)" if known.startswith("run ") else known
        if alias in holds and holds[alias].get("version") != target:
            outcome.moves.append(f"{alias}: {describe_hold(alias, holds[alias])}; main wants v{target} ({want.path})")
        elif have_v == target:
            outcome.moves.append(f"{alias}: v{target} ({want.path}) already holds it; nothing to do")
        else:
            note = next((s.notes.get(alias, "") for s in scope if s.commit == want.commit), "")
            outcome.moves.append(f"{alias}: would move {_v(have_v)} -> v{target} ({want.path}){note}")
    outcome.moves += [f"{alias}: {why}" for alias, why in desired.older_code.items()]


def _behind(registry: Registry, repo: Path, tip: str, outcome: Outcome) -> bool:
    """Whether the registry already follows a newer main than `tip` (then nothing may move)."""
    applied = registry.applied_commit()
    if applied and applied != tip and _is_ancestor(repo, tip, applied):
        outcome.moves.append(
            f"the registry already follows main at {applied[:12]}, which includes {tip[:12]}: nothing to do "
            "(a re-run of an older job never moves an alias backwards)"
        )
        return True
    return False


def _in_range(repo: Path, before: str, tip: str, steps: list[Step]) -> list[Step]:
    """The steps of the merges the push brought (first-parent commits after `before`)."""
    older = set(first_parent_commits(repo, before)) if git("cat-file", "-e", before, cwd=repo) is not None else set()
    return [s for s in steps if s.commit not in older]


def _is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return git("merge-base", "--is-ancestor", older, newer, cwd=repo) is not None


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


def _summary(alias: str, want: Item, desired: Desired, kind: str, commit: str, change: str) -> str:
    if kind == "revert":
        return f"revert: {change} at {commit[:12]}; {want.path} is the holder before it"
    if kind == "restore":
        return f"restored: {change} at {commit[:12]} (a revert was reverted)"
    step = next((s for s in desired.steps if s.commit == want.commit), None)
    rows = step.decisions.get(alias, []) if step else []
    decision = next((td for path, td in rows if path == want.path), None)
    if decision is None:
        return "promote"
    return "; ".join(f"{'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks) or "no checks"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "unset"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def version_tags(item: Item) -> dict[str, str]:
    """Everything a version needs to explain itself: its run's lineage and the merge."""
    tags = {k: v for k, v in item.run.data.tags.items() if k.startswith("flowops.") and k != "flowops.experiment_file"}
    tags.update(
        {"flowops.spec_path": item.path, "flowops.merge_commit": item.commit, "flowops.run_id": item.run.info.run_id}
    )
    return tags
