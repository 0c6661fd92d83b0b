"""`flowops promote`: turn a merge into registry changes that follow the policy.

A merge is linked to its run by content: the sha256 of each merged experiment spec, not
the commit message, so merge commits, squash merges and fast-forwards all work. Applying
the same range twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowops import lineage
from flowops.errors import FlowopsError, ProblemsError
from flowops.policy import Candidate, Decision, RegistryPolicy, TargetDecision, decide, rank
from flowops.registry import AuditRecord, Registry, actor
from flowops.validate import EXPERIMENTS_DIR, POLICY_FILE, load_experiment, load_policy

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: "before" of a first push


@dataclass
class Item:
    """One merged experiment file and what became of it."""

    path: str
    status: str  # changed | deleted | not trained | invalid
    message: str = ""
    run: object = None
    version: str | None = None
    created: bool = False
    candidate: Candidate | None = None


@dataclass
class Outcome:
    items: list[Item] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # what changed, one line each
    decisions: dict[str, list[tuple[str, TargetDecision]]] = field(default_factory=dict)  # alias -> (path, decision)
    errors: list[str] = field(default_factory=list)


def git_show(repo: Path, commit: str, path: str) -> str:
    text = lineage.git("show", f"{commit}:{path}", cwd=repo)
    if text is None:
        raise FlowopsError(f"{path}: not found at {commit[:12]}")
    return text + "\n"


def resolve_range(repo: Path, git_range: str) -> tuple[str, str]:
    """(before, after) commit ids of 'BEFORE..AFTER'; one-line errors for anything else."""
    if lineage.git("rev-parse", "--git-dir", cwd=repo) is None:
        raise FlowopsError(f"{repo}: not a git repository")
    before, sep, after = git_range.partition("..")
    if not sep or not before or not after or after.startswith("."):
        raise FlowopsError(f"--git-range {git_range!r}: expected BEFORE..AFTER (two commits)")
    resolved = []
    for ref in (before, after):
        if set(ref) == {"0"}:  # GitHub's "before" of a branch's first push
            resolved.append(EMPTY_TREE)
            continue
        sha = lineage.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
        if not sha:
            raise FlowopsError(f"--git-range {git_range}: {ref!r} is not a commit in {repo}")
        resolved.append(sha)
    return resolved[0], resolved[1]


def changed_experiments(repo: Path, before: str, after: str) -> list[tuple[str, str]]:
    """(A|M|D, path) of experiment files between the two commits (the merge's net change)."""
    out = lineage.git("diff", "--name-status", "--no-renames", before, after, "--", f"{EXPERIMENTS_DIR}/", cwd=repo) or ""
    rows = [line.split("\t", 1) for line in out.splitlines() if line.strip()]
    return [(status[0], path) for status, path in rows if path.endswith((".yaml", ".yml"))]


def find_run(client, spec):
    """The latest FINISHED run whose spec sha256 equals this spec's."""
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`flowops.spec_sha256` = '{spec.sha256()}' and attributes.status = 'FINISHED'")  # fmt: skip
    return runs[0] if runs else None


def merged_files(repo: Path, git_range: str) -> tuple[str, RegistryPolicy, str | None, list[tuple[str, str, str | None]]]:
    """For a range: (after commit, its policy, its code tree, [(A|M|D, path, text at after)])."""
    before, after = resolve_range(repo, git_range)
    policy = load_policy_text(repo, after)
    entries = [(status, path, None if status == "D" else git_show(repo, after, path)) for status, path in changed_experiments(repo, before, after)]
    return after, policy, lineage.code_tree(after, repo=repo), entries


def working_files(repo: Path, files: list[str]) -> tuple[str, RegistryPolicy, str | None, list[tuple[str, str, str | None]]]:
    """For --experiment files: the working tree stands in for the merge."""
    try:
        policy = load_policy(repo / POLICY_FILE)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    head = lineage.git("rev-parse", "HEAD", cwd=repo) or "working-tree"
    return head, policy, lineage.code_tree(repo=repo), [("M", f, None) for f in files]


def gather(client, entries, merged_tree: str | None) -> list[Item]:
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
            items.append(Item(path, "not trained", f"no FINISHED run with spec sha256 {spec.sha256()[:12]}: open a PR to train it"))
            continue
        tags = run.data.tags
        candidate = Candidate(f"run {run.info.run_id[:8]}", dict(run.data.metrics), tags.get("flowops.code_tree"), merged_tree)
        items.append(Item(path, "changed", run=run, candidate=candidate))
    return items


def load_policy_text(repo: Path, commit: str) -> RegistryPolicy:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / POLICY_FILE
        copy.write_text(git_show(repo, commit, POLICY_FILE))
        try:
            return load_policy(copy)
        except ProblemsError as exc:
            raise FlowopsError(f"{POLICY_FILE} at {commit[:12]} is invalid: {str(exc.problems[0]).split(': ', 1)[1]}") from None


def promote(client, repo: Path, git_range: str | None = None, files: list[str] | None = None, dry_run: bool = False) -> Outcome:
    """Register the merged experiments' models and move aliases as the policy decides."""
    after, policy, merged_tree, entries = merged_files(repo, git_range) if git_range else working_files(repo, files or [])
    items = gather(client, entries, merged_tree)
    outcome = Outcome(items=items)
    outcome.errors = [f"{i.path}: {i.message}" for i in items if i.status in ("not trained", "invalid")]
    live = [i for i in items if i.status == "changed"]
    if policy.mode == "disabled" or not live:
        outcome.moves.append("promotion is disabled by the policy" if policy.mode == "disabled" else "no trained experiment in this merge")
        return outcome
    dry_run = dry_run or policy.mode == "dry_run"
    registry = Registry(client, policy.model_name)
    if not dry_run:
        registry.ensure_model()
        for item in live:
            mv, item.created = registry.register(item.run, version_tags(item, after))
            item.version = str(mv.version)
            item.candidate = Candidate(f"v{mv.version}", item.candidate.metrics, item.candidate.code_tree, item.candidate.merged_code_tree)
    if dry_run:
        if _model_exists(registry):  # report versions that exist already, change nothing
            for item in live:
                mv = registry.version_for_run(item.run.info.run_id)
                item.version = str(mv.version) if mv else None
        _decide_all(registry, policy, live, outcome, apply=False, commit=after)
        return outcome
    with registry.exclusive():
        _decide_all(registry, policy, live, outcome, apply=True, commit=after)
    return outcome


def _decide_all(registry: Registry, policy: RegistryPolicy, live: list[Item], outcome: Outcome, apply: bool, commit: str) -> None:
    # Holders are read inside the queue, right before moving, so a promote that ran
    # meanwhile is decided against, not overwritten.
    holders = registry.holders(policy.targets) if _model_exists(registry) else {a: None for a in policy.targets}
    by_candidate = {item.path: decide(item.candidate, holders, policy) for item in live}
    for alias in policy.targets:
        outcome.decisions[alias] = [(item.path, by_candidate[item.path].targets[alias]) for item in live]
        holder = holders[alias]
        already = [i for i in live if holder and i.version == holder.version]
        if already:
            outcome.moves.append(f"{alias}: v{holder.version} ({already[0].path}) already holds it; nothing to do")
            continue
        passing = [i for i in live if by_candidate[i.path].targets[alias].promote]
        if not passing:
            outcome.moves.append(f"{alias}: stays at {_v(holder)}")
            continue
        item_of = {id(i.candidate): i for i in passing}
        best = item_of[id(rank([i.candidate for i in passing], policy)[0])]
        others = [i.path for i in passing if i is not best]
        target_version = best.version or "(new version)"
        note = f" (also qualified, ranked lower: {', '.join(others)})" if others else ""
        if apply:
            decision = by_candidate[best.path].targets[alias]
            record = AuditRecord(alias, holder.version if holder else None, best.version, "promote", _now(), actor(),
                                 best.run.data.tags.get("flowops.pr_number"), commit, policy.sha256(), _checks_summary(decision))  # fmt: skip
            registry.move(alias, best.version, record, policy.legacy_stages, policy.archive_previous)
        verb = "moved" if apply else "would move"
        outcome.moves.append(f"{alias}: {verb} {_v(holder)} -> v{target_version} ({best.path}){note}")


def _model_exists(registry: Registry) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        registry.client.get_registered_model(registry.name)
        return True
    except MlflowException:
        return False


def _v(holder) -> str:
    return f"v{holder.version}" if holder else "unset"


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _checks_summary(decision: TargetDecision) -> str:
    return "; ".join(f"{'ok' if c.passed else 'FAIL'}: {c.detail}" for c in decision.checks) or "no checks"


def version_tags(item: Item, commit: str) -> dict[str, str]:
    """Everything a version needs to explain itself: its run's lineage and the merge."""
    tags = {k: v for k, v in item.run.data.tags.items() if k.startswith("flowops.") and k != "flowops.experiment_file"}
    tags.update({"flowops.spec_path": item.path, "flowops.merge_commit": commit, "flowops.run_id": item.run.info.run_id})
    return tags


def explain(decision: Decision) -> list[str]:
    """Human lines for a Decision (used by promote output and the PR report)."""
    lines = []
    for alias, td in decision.targets.items():
        lines.append(f"{alias}: {'promote' if td.promote else 'keep ' + (('v' + td.holder) if td.holder else 'unset')}")
        lines += [f"  {'✓' if c.passed else '✗'} {c.detail}" for c in td.checks]
    return lines
