"""What the registry commands do, as functions with typed results: the CLI parses, calls one of
these and prints (cli -> api -> promotion, report, registry; as iterative/gto keeps its CLI thin).

Every function raises FlowopsError with one line when it cannot do what it was asked; none prints.
MLflow and the rooms are imported inside, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops.errors import FlowopsError

if TYPE_CHECKING:
    from flowops.gitops.changes import Changes
    from flowops.promotion.promote import Outcome
    from flowops.registry.store import AuditRecord, Registry
    from flowops.spec.policy import RegistryPolicy


def client(tracking_uri: str | None) -> Any:
    """A client for the registry commands: waiting on a silent server is bounded (~15 s)."""
    from mlflow.tracking import MlflowClient

    from flowops import tracking

    tracking.bounded_http()
    return MlflowClient(tracking.use(tracking_uri))


def connect(tracking_uri: str | None, policy_path: Path) -> tuple[Registry, RegistryPolicy]:
    """The registered model the policy names, and the policy."""
    from flowops.registry.store import Registry
    from flowops.spec.load import policy_or_error

    policy = policy_or_error(policy_path)
    return Registry(client(tracking_uri), policy.model_name), policy


def promote(repo: Path, git_range: str, dry_run: bool, create_model: bool, tracking_uri: str | None) -> Outcome:
    """Reconcile the registry to main at the range's end (flowops.promotion.promote)."""
    from flowops import tracking
    from flowops.promotion.promote import promote as reconcile

    uri = tracking.resolve_uri(tracking_uri)
    embedded = tracking.is_embedded(uri)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if create_model and not embedded and user and not _is_admin(uri, user):
        raise FlowopsError(
            f"--create-model: on a tracking server with users only the admin creates the model (flowops "
            f"server-init), not {user!r}: whoever creates a registered model owns it and could move its aliases"
        )
    return reconcile(client(tracking_uri), repo, git_range, dry_run, create_model or embedded)


def _is_admin(uri: str, user: str) -> bool:
    """Whether the server's auth says `user` is an admin; False when it cannot say (fail closed)."""
    import warnings

    try:
        with warnings.catch_warnings():  # mlflow.server's imports warn about starlette: not ours to print
            warnings.simplefilter("ignore")
            from mlflow.server import get_app_client

            auth = get_app_client("basic-auth", tracking_uri=uri)
        return bool(auth.get_user(user).is_admin)
    except Exception:
        return False


def status(repo: Path, ref: str, tracking_uri: str | None, policy_path: Path) -> list[dict[str, Any]]:
    """One row per alias: its holder, what main asks for, the drift (flowops.promotion.history)."""
    from flowops.promotion.history import status_rows

    registry, policy = connect(tracking_uri, policy_path)
    return status_rows(registry, policy, repo, ref)


@dataclass(frozen=True)
class History:
    records: list[AuditRecord]  # oldest first
    unreadable: list[str]  # audit tags that could not be read (skipped, named)
    holds: dict[str, dict]  # alias -> its hold


def history(alias: str | None, tracking_uri: str | None, policy_path: Path) -> History:
    """The audit trail of alias moves (of `alias`, or every alias) and the holds."""
    from flowops.promotion.history import check_alias, require_model

    registry, policy = connect(tracking_uri, policy_path)
    check_alias(policy, alias)
    require_model(registry)
    records = registry.history(alias)
    holds = {a: h for a, h in sorted(registry.holds().items()) if alias is None or a == alias}
    return History(records, list(registry.malformed), holds)


def rollback(
    alias: str, to_version: str | None, reason: str | None, tracking_uri: str | None, policy_path: Path
) -> AuditRecord:
    """Move `alias` back (or to `to_version`) and hold it there; the rollback's audit record."""
    from flowops.promotion.history import rollback as move_back

    registry, policy = connect(tracking_uri, policy_path)
    return move_back(registry, policy, alias, to_version, reason)


def release(alias: str, tracking_uri: str | None, policy_path: Path) -> None:
    """End a rollback's hold on `alias`; FlowopsError when it is not held."""
    from flowops.promotion.history import check_alias, require_model

    registry, policy = connect(tracking_uri, policy_path)
    check_alias(policy, alias)
    require_model(registry)
    if alias not in registry.holds():
        raise FlowopsError(f"{alias}: not held")
    registry.release(alias)


def report(
    run_id: str,
    out: Path,
    experiment_file: str | None,
    ref: str | None,
    repo: Path,
    tracking_uri: str | None,
    policy_path: Path,
) -> Path:
    """Write the PR report for `run_id` into `out` (policy and experiment from `ref`, else the
    working tree); the report.md written."""
    from flowops import tracking
    from flowops.gitops.source import Source
    from flowops.report.comment import build

    source = Source.at(repo, ref) if ref else Source.working_tree(repo)
    policy = source.policy(policy_path)
    build(client(tracking_uri), run_id, policy, out, tracking.resolve_uri(tracking_uri), experiment_file, source)
    return out / "report.md"


@dataclass(frozen=True)
class Exported:
    holders: dict[str, dict[str, str]]  # alias -> what holders.json says of it
    scored: bool  # False: the project names no evaluate entry point, so nothing would score them


def export_holders(out: Path, fork: bool, tracking_uri: str | None, policy_path: Path) -> Exported:
    """The models holding the aliases, written to `out` for a PR job (trusted stage)."""
    from flowops.registry.holders import export
    from flowops.spec.schema import schema_or_error

    schema = schema_or_error(Path("."))
    scored = not (schema.generic and not schema.config.evaluate)  # else nothing scores them on the PR's data
    registry, policy = connect(tracking_uri, policy_path)
    return Exported(export(registry, policy, out, fork, scored), scored)


@dataclass(frozen=True)
class Planned:
    changes: Changes  # what the PR trains
    retrained: list[str]  # experiment files added because they hold an alias and the code changed


def plan_holders(
    touched: str, stale: str, max_experiments: int, tracking_uri: str | None, policy_path: Path
) -> Planned:
    """What a PR trains: its experiments (`touched`, `stale`: JSON lists from flowops changed) and,
    when its code changed, the aliases' holders'; FlowopsError over `max_experiments`."""
    from flowops.gitops.changes import Changes, over_cap, with_holders
    from flowops.registry.holders import holder_paths

    lists = []
    for option, text in (("--experiments", touched), ("--stale", stale)):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FlowopsError(f"{option} {text[:80]!r}: expected a JSON list of experiment files (flowops changed)")
        lists.append(value)
    changes = Changes(lists[0], lists[1], bool(lists[1]))  # stale is non-empty only when the code changed
    registry, policy = connect(tracking_uri, policy_path)
    planned, added = with_holders(changes, holder_paths(registry, policy))
    too_many = over_cap(planned, max_experiments)
    if too_many:
        raise FlowopsError(too_many)
    return Planned(planned, added)
