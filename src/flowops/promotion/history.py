"""`flowops history`, `flowops status` and `flowops rollback`: reading and undoing the trail."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.registry.store import AuditRecord, Registry, actor, describe_hold, tracking_user
from flowops.spec.policy import RegistryPolicy


def check_alias(policy: RegistryPolicy, alias: str | None) -> None:
    if alias is not None and alias not in policy.targets:
        from flowops.suggest import did_you_mean

        raise FlowopsError(
            f"unknown alias {alias!r}{did_you_mean(alias, policy.targets)}; the policy has: {', '.join(policy.targets)}"
        )


def require_model(registry: Registry) -> None:
    if not registry.model_exists():
        raise FlowopsError(f"model {registry.name!r} is not registered yet: nothing has been promoted")


def status_rows(
    registry: Registry, policy: RegistryPolicy, repo: Path | None = None, ref: str = "HEAD"
) -> list[dict[str, Any]]:
    """Each alias's holder with its key metrics and lineage, what main at `ref` asks for, and the drift."""
    require_model(registry)
    desired = _desired(registry, policy, repo, ref)
    holds = registry.holds()
    rows: list[dict[str, Any]] = []
    for alias in policy.targets:
        mv = registry.holder(alias)
        row: dict[str, Any] = {"alias": alias, "version": None if mv is None else str(mv.version)}
        if mv is not None:
            metrics = registry.client.get_run(mv.run_id).data.metrics
            row.update(
                {
                    "run_id": mv.run_id,
                    "primary": (policy.primary_metric, metrics.get(policy.primary_metric)),
                    "val_loss": metrics.get("val_loss"),
                    "spec_path": mv.tags.get("flowops.spec_path"),
                    "commit": mv.tags.get("flowops.merge_commit"),
                    "pr": mv.tags.get("flowops.pr_number"),
                }
            )
        row["hold"] = holds.get(alias)
        row["wants"], row["drift"] = _drift(registry, alias, row["version"], desired, row["hold"])
        rows.append(row)
    return rows


def _desired(registry: Registry, policy: RegistryPolicy, repo: Path | None, ref: str) -> Any:
    """main's desired state at `ref`, or a string saying why there is none (not a git checkout)."""
    from flowops.gitops.git import git
    from flowops.promotion.desired import replay

    if repo is None:
        return "no repository given"
    tip = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    if not tip:
        return f"{repo}: {ref} is not a commit of a git repository: no desired state to compare with"
    return replay(registry.client, repo, tip, policy)


def _drift(registry: Registry, alias: str, have: str | None, desired: Any, hold: dict | None) -> tuple[Any, str]:
    """(the version main wants, or None; one line on how the registry differs from it, "" when it agrees)."""
    if isinstance(desired, str):
        return None, desired
    want = desired.holders.get(alias)
    mv = None if want is None else registry.version_for_run(want.run.info.run_id)
    wants = None if want is None else (str(mv.version) if mv else f"run {want.run.info.run_id[:8]} (not registered)")
    if hold is not None and hold.get("version") != wants:
        return wants, f"{describe_hold(alias, hold)}; main wants {_label(wants)}"
    if wants is None:
        return wants, ""
    if wants == have:
        return wants, desired.older_code.get(alias, "")
    return wants, f"main at {desired.tip[:12]} wants {_label(wants)}: run flowops promote to reconcile"


def _label(version: str | None) -> str:
    return "no holder" if version is None else (f"v{version}" if version[0].isdigit() else version)


def rollback(registry: Registry, policy: RegistryPolicy, alias: str, to: str | None, reason: str | None) -> AuditRecord:
    """Move `alias` back: to `to` (a version that once held it), or to the holder before its last promote.

    Without `to`, a second rollback does not toggle back: the last *forward* move decides.
    """
    from datetime import datetime

    check_alias(policy, alias)
    require_model(registry)
    with registry.exclusive():
        registry.repair()
        current = registry.holder(alias)
        trail = registry.history(alias)
        if to is None:
            forward = [r for r in trail if r.kind == "promote"]
            if not forward or forward[-1].from_version is None:
                raise FlowopsError(f"{alias}: no earlier holder in the audit trail to roll back to; name one with --to")
            to = forward[-1].from_version
        if registry.version(to) is None:
            raise FlowopsError(f"model {registry.name!r} has no version {to!r}")
        if (
            current is not None
            and str(current.version) == str(to)
            and registry.holds().get(alias, {}).get("version") == str(to)
        ):
            raise FlowopsError(f"{alias}: v{to} already holds it (the holder before its last promote)")
        # Not held there yet (a `git revert` reconciled it back, say): the break-glass holds it where it is.
        held = {v for r in trail for v in (r.from_version, r.to_version) if v}
        if str(to) not in held:
            listed = ", ".join(f"v{v}" for v in sorted(held, key=lambda v: (len(v), v))) or "none"
            raise FlowopsError(f"{alias}: v{to} never held it; versions that did: {listed}")
        record = AuditRecord(
            alias,
            current.version if current else None,
            to,
            "rollback",
            datetime.now(UTC).isoformat(timespec="seconds"),
            actor(),
            None,
            None,
            policy.sha256(),
            reason or "rollback",
            user=tracking_user(),
        )
        # Break-glass: the hold keeps reconciliation from moving it back until released or main agrees.
        # Hold first, so no promote can move it back in between; a move that does not happen takes its
        # hold away (here, or the next command's repair when this process dies in between).
        registry.hold(alias, str(to), record.time, reason or "rollback")
        try:
            return registry.move(alias, to, record, policy.legacy_stages, policy.archive_previous)
        except BaseException:
            try:
                registry.release_if_not_at(alias)
            except Exception:
                pass  # the registry does not answer: the next command's repair releases it
            raise
