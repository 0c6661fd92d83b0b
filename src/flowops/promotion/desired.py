"""The registry main asks for: a pure function of main's first-parent history (reads only).

For each merge on main, oldest first, the experiment files it adds or changes are bound to
their runs (`binding`) and decided against the holders main had asked for until then, with
the policy committed at that merge — the same `decide()` the PR report previews, so "beat the
holder by X" keeps its meaning. A holder whose experiment file is gone from main (a deletion, a
`git revert`) gives way to the most recent earlier holder that is still present. Nothing here
writes: `promote` applies the difference, `status` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.gitops.at_commit import code_paths_at, schema_at
from flowops.gitops.git import EMPTY_TREE, changed_experiments, code_tree, git, git_show, train_tree
from flowops.promotion import evidence
from flowops.promotion.binding import Merged, NotBound, bind
from flowops.promotion.decide import Holder, TargetDecision, decide, rank
from flowops.spec.load import EXPERIMENTS_DIR, POLICY_FILE, load_policy
from flowops.spec.policy import RegistryPolicy
from flowops.spec.schema import Schema


@dataclass
class Item:
    """One experiment file a merge adds, changes or deletes, and the run it ships."""

    path: str
    # changed | deleted | not trained | invalid | superseded (a later commit of the push changed it) |
    # restored (back to a state main had, with no run to ship: nothing new)
    status: str
    message: str = ""
    sha: str = ""
    run: Any = None  # the mlflow Run, for status 'changed'
    model_id: str = ""
    commit: str = ""
    version: str | None = None
    created: bool = False
    spec: Any = None  # the experiment (its schema's), for status 'changed'
    rebuilt: bool = False  # the holder's own file, unchanged, bound to a run trained on this merge's code
    returning: bool = False  # main had this very state of the file before (a revert brings it back)


@dataclass
class Step:
    """What one merge on main decided."""

    commit: str
    items: list[Item] = field(default_factory=list)
    decisions: dict[str, list[tuple[str, TargetDecision]]] = field(default_factory=dict)  # alias -> (path, decision)
    notes: dict[str, str] = field(default_factory=dict)  # alias -> "(also qualified, ranked lower: ...)"
    skipped: str = ""  # why this merge decided nothing (no policy, an invalid policy)


@dataclass
class Desired:
    """Which run main says each alias should hold, and why."""

    tip: str
    policy: RegistryPolicy
    holders: dict[str, Item | None]
    reasons: dict[str, tuple[str, str, str]]  # alias -> (promote | revert | restore, the commit, what changed)
    steps: list[Step]
    older_code: dict[str, str] = field(default_factory=dict)  # alias -> why its holder is built from older code


def first_parent_commits(repo: Path, tip: str) -> list[str]:
    """Main's merges, oldest first (the first-parent line: one commit per merge or direct push)."""
    if git("rev-parse", "--is-shallow-repository", cwd=repo) == "true":
        raise FlowopsError(
            f"{repo}: a shallow clone; promote replays main's whole history (checkout with fetch-depth: 0)"
        )
    out = git("rev-list", "--first-parent", "--reverse", tip, cwd=repo)
    if out is None:
        raise FlowopsError(f"{repo}: cannot list the history of {tip[:12]}")
    return out.split()


def policy_at(repo: Path, commit: str) -> RegistryPolicy | str:
    """The policy committed at `commit`, or why there is none to decide with."""
    if git("cat-file", "-e", f"{commit}:{POLICY_FILE}", cwd=repo) is None:
        return f"no {POLICY_FILE} at {commit[:12]}"
    try:
        return load_policy(POLICY_FILE, git_show(repo, commit, POLICY_FILE))
    except ProblemsError as exc:
        return f"{POLICY_FILE} at {commit[:12]} is invalid: {str(exc.problems[0]).split(': ', 1)[1]}"


def replay(
    client: Any, repo: Path, tip: str, policy: RegistryPolicy, label: Any = None, embedded: bool | None = None
) -> Desired:
    """Decide every merge on main up to `tip`; `label(run_id)` names a run's version for messages.
    `embedded`: the store is a local SQLite file (default: MLflow's tracking URI says so), where runs
    logged by hand may ship unless a merge's policy says otherwise."""
    label = label or (lambda run_id: f"run {run_id[:8]}")
    if embedded is None:
        import mlflow

        from flowops.tracking import is_embedded

        embedded = is_embedded(mlflow.get_tracking_uri())
    present: dict[str, str] = {}  # experiment file -> spec sha256, as main has it now
    seen: dict[str, set[str]] = {}  # experiment file -> every spec sha256 main had for it before
    history: dict[str, list[Item]] = {alias: [] for alias in policy.targets}
    reasons: dict[str, tuple[str, str, str]] = {}
    steps = []
    commits = first_parent_commits(repo, tip)
    for index, commit in enumerate(commits):
        parent = commits[index - 1] if index else EMPTY_TREE
        changes = changed_experiments(repo, parent, commit)
        holding = any(_current(entries, present) is not None for entries in history.values())
        if not changes and not (holding and index and _touches_more_than_experiments(repo, parent, commit)):
            continue
        before = {alias: _current(entries, present) for alias, entries in history.items()}
        step = Step(commit)
        try:
            schema: Schema | str = schema_at(repo, commit)
        except (ProblemsError, FlowopsError) as exc:
            problems = getattr(exc, "problems", None)
            schema = str(problems[0]) if problems else str(exc)
        for status, path in changes:
            item = _item(status, path, repo, commit, schema)
            step.items.append(item)
            present.pop(path, None)
            if item.sha:
                present[path] = item.sha
                item.returning = item.sha in seen.get(path, set())
                seen.setdefault(path, set()).add(item.sha)
        # a holder whose file is gone (deleted, reverted, changed) gives way to an earlier one still present;
        # a file that comes back (a revert of the revert) gives its entry back
        for alias, entries in history.items():
            now = _current(entries, present)
            if now is not before[alias]:
                old = before[alias]
                back = old is not None and (now is None or _index(entries, now) < _index(entries, old))
                if back and old is not None:
                    gone = (
                        f"main's {old.path} is no longer the holder's (changed)"
                        if old.path in present
                        else "main no longer has the holder's experiment file"
                    )
                    reasons[alias] = ("revert", commit, gone)
                elif now is not None:
                    reasons[alias] = ("restore", commit, f"main has {now.path} again")
        rules = policy_at(repo, commit)
        if isinstance(rules, str):
            if not changes:
                continue  # a code-only merge under an unreadable policy decides nothing, as before
            step.skipped = rules
            steps.append(step)
            continue
        tree = None  # an unreadable schema made every item invalid: nothing to bind
        if isinstance(schema, Schema):
            paths = code_paths_at(schema, repo, commit)
            tree = code_tree(commit, repo=repo, paths=paths)
            merged = Merged(commit, tree, train_tree(commit, repo, paths), paths)
            hand_logged = embedded if rules.ship_hand_logged_runs is None else rules.ship_hand_logged_runs
            for item in step.items:
                if item.status == "changed":
                    _bind(client, repo, item, merged, rules, hand_logged, schema)
            if index and code_changed(repo, parent, commit, paths):
                current = [_current(entries, present) for entries in history.values()]
                step.items += _rebuilt(client, repo, current, step.items, merged, rules, hand_logged, schema)
        if not step.items:
            continue  # code changed, nothing held an alias that a run of the merged code could rebuild
        live = [i for i in step.items if i.status == "changed"]
        for alias in (a for a in rules.targets if a in history):
            winner, rows, note = decide_merge(
                live, _current(history[alias], present), alias, rules, tree, label, client
            )
            step.decisions[alias] = rows
            if winner is not None:
                history[alias].append(winner)
                reasons[alias] = ("promote", commit, "")
                step.notes[alias] = note
        steps.append(step)
    holders = {alias: _current(entries, present) for alias, entries in history.items()}
    return Desired(tip, policy, holders, reasons, steps, older_code(repo, holders, tip))


def _touches_more_than_experiments(repo: Path, parent: str, commit: str) -> bool:
    """Whether the merge changes any file outside experiments/ (only then can its code identity change)."""
    names = git("diff", "--name-only", parent, commit, "--", ".", f":(exclude){EXPERIMENTS_DIR}/", cwd=repo)
    if names is None:
        raise FlowopsError(f"{repo}: git diff {parent[:12]}..{commit[:12]} failed: which code changed is unknown")
    return bool(names.strip())


def code_changed(repo: Path, parent: str, commit: str, paths: tuple[str, ...]) -> list[str]:
    """The training code files `commit` changes against `parent` (git's word), [] when none."""
    if not paths:
        return []
    names = git("diff", "--name-only", parent, commit, "--", *paths, cwd=repo)
    if names is None:
        raise FlowopsError(f"{repo}: git diff {parent[:12]}..{commit[:12]} failed: which code changed is unknown")
    return names.split()


def older_code(repo: Path, holders: dict[str, Item | None], tip: str) -> dict[str, str]:
    """alias -> why its holder is built from older code than main's at `tip` (the first code file that
    differs), for the holders that are."""
    if not any(holders.values()):
        return {}
    try:
        paths = code_paths_at(schema_at(repo, tip), repo, tip)
    except (ProblemsError, FlowopsError):
        return {}  # main's schema is unreadable at the tip: promote says so; nothing to compare with
    said: dict[str, str] = {}
    for alias, holder in holders.items():
        differ = code_changed(repo, holder.commit, tip, paths) if holder else []
        if holder and differ:
            more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
            said[alias] = (
                f"built from older code: {holder.path} was trained for {holder.commit[:12]}; main's code has changed "
                f"since ({differ[0]}{more}) and no run of it on that code was merged (a PR that changes the code "
                "retrains the holders' experiments)"
            )
    return said


def _rebuilt(
    client: Any,
    repo: Path,
    holders: list[Item | None],
    merged_items: list[Item],
    merged: Merged,
    policy: RegistryPolicy,
    hand_logged: bool,
    schema: Schema,
) -> list[Item]:
    """The holders' experiment files, unchanged by this merge of new code, bound to runs of that code."""
    rebuilt: dict[str, Item] = {}
    touched = {i.path for i in merged_items}
    for holder in holders:
        if holder is None or holder.path in touched or holder.path in rebuilt:
            continue
        try:
            bound = bind(client, holder.spec, merged, policy.require_same_code, hand_logged, repo, schema)
        except NotBound:
            continue  # not retrained on this code: the holder stays, `status` shows it built from older code
        if bound.run.info.run_id == holder.run.info.run_id:
            continue
        rebuilt[holder.path] = Item(
            holder.path,
            "changed",
            f"rebuilt on the merged code: {bound.why}",
            sha=holder.sha,
            run=bound.run,
            model_id=bound.model_id,
            commit=merged.commit,
            spec=holder.spec,
            rebuilt=True,
        )
    return list(rebuilt.values())


def decide_merge(
    live: list[Item],
    holder: Item | None,
    alias: str,
    policy: RegistryPolicy,
    tree: str | None,
    label: Any,
    client: Any = None,
) -> tuple[Item | None, list[tuple[str, TargetDecision]], str]:
    """(the item that takes `alias` at this merge or None, each item's decision, a note on the others)."""
    held_by: dict[str, Holder | None] = {
        i.path: None if holder is None else evidence.holder(label(holder.run.info.run_id), holder.run, i.run)
        for i in live
    }
    candidates = {i.path: evidence.candidate(label(i.run.info.run_id), i.run, tree) for i in live}
    target = policy.targets[alias]
    needs_interval = target.improve is not None and target.improve.confidence is not None
    if holder is not None and client is not None and needs_interval:
        candidates = {
            i.path: evidence.with_intervals(
                client, candidates[i.path], i.run, {alias: _pair(held_by[i.path], holder.run)}, policy
            )
            for i in live
        }
    decisions = {
        i.path: decide(candidates[i.path], {alias: held_by[i.path]}, _rules_for(i, holder, alias, policy)).targets[
            alias
        ]
        for i in live
    }
    rows = [(i.path, decisions[i.path]) for i in live]
    if holder is not None and any(i.run.info.run_id == holder.run.info.run_id for i in live):
        # the holder's own run merged again (a file restored): nothing to decide against itself
        return (
            None,
            [
                (path, td)
                for path, td in rows
                if path not in {i.path for i in live if i.run.info.run_id == holder.run.info.run_id}
            ],
            "",
        )
    passing = [i for i in live if decisions[i.path].promote]
    if not passing:
        return None, rows, ""
    by_candidate = {id(candidates[i.path]): i for i in passing}
    best = by_candidate[id(rank([candidates[i.path] for i in passing], policy)[0])]
    others = [i.path for i in passing if i is not best]
    return best, rows, f" (also qualified, ranked lower: {', '.join(others)})" if others else ""


def _rules_for(item: Item, holder: Item | None, alias: str, policy: RegistryPolicy) -> RegistryPolicy:
    """The policy `item` is decided by: a rebuild of the holder's own experiment on new code must pass
    every check but `improve` (it replaces its own older build; it need not beat it)."""
    if not (item.rebuilt and holder is not None and holder.path == item.path and policy.targets[alias].improve):
        return policy
    target = policy.targets[alias].model_copy(update={"improve": None})
    return policy.model_copy(update={"targets": {**policy.targets, alias: target}})


def _pair(held: Holder | None, run: Any) -> tuple[Holder, Any] | None:
    return None if held is None else (held, run)


def _index(entries: list[Item], entry: Item) -> int:
    return next(i for i, e in enumerate(entries) if e is entry)


def _current(entries: list[Item], present: dict[str, str]) -> Item | None:
    """The most recent holder whose experiment file main still has, unchanged."""
    return next((e for e in reversed(entries) if present.get(e.path) == e.sha), None)


def _item(status: str, path: str, repo: Path, commit: str, schema: Schema | str) -> Item:
    if status == "D":
        return Item(path, "deleted", "deleted in this merge: nothing to promote", commit=commit)
    if isinstance(schema, str):  # flowops.yaml or the MLproject at this merge cannot be read
        return Item(path, "invalid", schema, commit=commit)
    try:
        spec = schema.load(path, git_show(repo, commit, path))
    except ProblemsError as exc:
        return Item(path, "invalid", str(exc.problems[0]), commit=commit)
    return Item(path, "changed", sha=spec.sha256(), commit=commit, spec=spec)


def _bind(
    client: Any, repo: Path, item: Item, merged: Merged, policy: RegistryPolicy, hand_logged: bool, schema: Schema
) -> None:
    try:
        bound = bind(client, item.spec, merged, policy.require_same_code, hand_logged, repo, schema)
    except NotBound as exc:
        if item.returning:  # a revert to a state main had: it asks for no new model, the holders follow main
            item.status = "restored"
            item.message = f"back to a state main had before, with no run to ship ({exc}): nothing new to promote"
        else:
            item.status, item.message = "not trained", str(exc)
        return
    item.run, item.model_id, item.message = bound.run, bound.model_id, bound.why
