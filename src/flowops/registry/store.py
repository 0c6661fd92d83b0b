"""The MLflow Model Registry as flowops uses it: aliases first, an audit trail, a queue.

MLflow keeps no history of which version held an alias when, and has no rollback. flowops
writes one audit record per alias move as a tag on the registered model
(`flowops.audit.<time>.<random>` -> JSON), *before* moving the alias, and removes it again
if the move fails: no alias moves without its record. Concurrent promotes queue through
intent tags (`flowops.intent.<time>.<random>`): the oldest live intent goes first.

Every call goes through `access.CheckedClient`: a read that fails is an error that stops the
command, never "nothing there" (see `flowops.registry.access`).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from flowops.errors import FlowopsError
from flowops.registry.access import RegistryError, checked
from flowops.registry.decide import Holder

AUDIT_PREFIX = "flowops.audit."
INTENT_PREFIX = "flowops.intent."
STALE_INTENT_S = 600  # an intent older than this belongs to a process that died
LEGACY_STAGES = {"staging": "Staging", "production": "Production"}


@dataclass
class AuditRecord:
    alias: str
    from_version: str | None
    to_version: str
    kind: str  # promote | rollback
    time: str
    actor: str  # the GitHub actor who caused it ("" outside GitHub Actions)
    pr: str | None
    commit: str | None
    policy_sha256: str | None
    summary: str
    key: str = ""
    user: str = ""  # the identity the tracking server authenticated (records before 0.2 have none)

    def who(self) -> str:
        if not self.user:  # an older record: `actor` was the GitHub actor or the OS user
            return self.actor
        return self.user + (f" (GitHub {self.actor})" if self.actor else "")


def actor() -> str:
    """The GitHub actor behind this command, "" when not run by GitHub Actions."""
    return os.environ.get("GITHUB_ACTOR", "")


def tracking_user() -> str:
    """The identity the tracking server sees: MLFLOW_TRACKING_USERNAME, else (embedded store) the OS user."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def _unique_key(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000):013d}.{uuid.uuid4().hex[:8]}"


class Registry:
    def __init__(self, client: Any, model_name: str):
        self.client, self.name = checked(client), model_name
        self.malformed: list[str] = []  # flowops tags that could not be read, skipped

    def model_exists(self) -> bool:
        """Whether the registered model exists: False only when the server says it does not."""
        return self.client.absent_or_raise("get_registered_model", self.name) is not None

    def ensure_model(self, create: bool) -> None:
        """The registered model must exist; only `create` (admin set-up, the embedded store) makes it.

        Whoever creates a registered model owns it (MANAGE): a trainer's credentials must never do so.
        """
        if self.model_exists():
            return
        if not create:
            raise FlowopsError(
                f"model {self.name!r} is not registered on {self.client.uri}: the admin creates it and grants the "
                "promoter MANAGE (flowops server-init), or pass --create-model for a first set-up"
            )
        try:
            self.client.create_registered_model(self.name, description="Promoted by flowops from merged experiments.")
        except RegistryError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile by another promote: fine
                raise

    def holder(self, alias: str) -> Any:
        """The ModelVersion holding `alias`; None only when the alias (or the model) is not there."""
        return self.client.absent_or_raise("get_model_version_by_alias", self.name, alias, alias=True)

    def version(self, version: str) -> Any:
        """ModelVersion `version`, or None when the model has no such version."""
        return self.client.absent_or_raise("get_model_version", self.name, str(version))

    def holders(self, aliases: Any) -> dict[str, Holder | None]:
        """Each alias's holder with the metrics of the run that produced it."""
        out = {}
        for alias in aliases:
            mv = self.holder(alias)
            out[alias] = (
                None if mv is None else Holder(str(mv.version), dict(self.client.get_run(mv.run_id).data.metrics))
            )
        return out

    def version_for_run(self, run_id: str) -> Any:
        found = self.client.search_model_versions(f"name = '{self.name}' and run_id = '{run_id}'")
        return min(found, key=lambda mv: int(mv.version)) if found else None

    def register(self, run: Any, model_id: str, tags: dict[str, str]) -> tuple[Any, bool]:
        """(version, created): the version made from `run`'s model `model_id`, created once with all its tags."""
        existing = self.version_for_run(run.info.run_id)
        if existing is not None:
            return existing, False
        # One call creates the version with its tags: no untagged orphan if we stop here.
        mv = self.client.create_model_version(
            self.name, f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id
        )
        return mv, True

    def move(
        self, alias: str, version: str, record: AuditRecord, legacy_stages: bool, archive_previous: bool
    ) -> AuditRecord:
        """Point `alias` at `version`, audit record first; the record is removed if the move fails."""
        version = str(version)
        record.to_version = version
        record.from_version = None if record.from_version is None else str(record.from_version)
        record.key = _unique_key(AUDIT_PREFIX)
        value = {k: v for k, v in asdict(record).items() if k != "key"}
        value["summary"] = value["summary"][:2000]
        self.client.set_registered_model_tag(self.name, record.key, json.dumps(value))
        try:
            self.client.set_registered_model_alias(self.name, alias, version)
        except Exception:
            self.client.delete_registered_model_tag(self.name, record.key)
            raise
        if legacy_stages:
            self.mirror_stages([v for v in (version, record.from_version) if v], archive_previous)
        if archive_previous and record.from_version and record.from_version != version:
            previous = self.version(record.from_version)
            if previous is not None and not previous.aliases:
                self.client.set_model_version_tag(self.name, record.from_version, "flowops.status", "archived")
        self.client.set_model_version_tag(self.name, version, "flowops.status", "live")
        return record

    def mirror_stages(self, versions: list[str], archive_previous: bool) -> None:
        """Legacy stage of each version from the aliases it holds: Production over Staging."""
        for version in versions:
            aliases = set(self.client.get_model_version(self.name, version).aliases)
            stage = next(
                (LEGACY_STAGES[a] for a in ("production", "staging") if a in aliases),
                "Archived" if archive_previous else "None",
            )
            self.client.transition_model_version_stage(self.name, version, stage, archive_existing_versions=False)

    def history(self, alias: str | None = None) -> list[AuditRecord]:
        """The audit trail, oldest first; unreadable records are skipped and listed in `malformed`."""
        tags = self.client.get_registered_model(self.name).tags
        records = []
        self.malformed = []
        for key, value in sorted(tags.items()):
            if not key.startswith(AUDIT_PREFIX):
                continue
            try:
                records.append(AuditRecord(**json.loads(value), key=key))
            except (ValueError, TypeError):
                self.malformed.append(key)
        return [r for r in records if alias is None or r.alias == alias]

    @contextmanager
    def exclusive(self, timeout_s: float = 120, settle_s: float = 0.3):
        """Serialise promotes of this model: queue by intent tag, oldest live intent first."""
        key = _unique_key(INTENT_PREFIX)
        self.client.set_registered_model_tag(
            self.name, key, json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        )
        try:
            time.sleep(settle_s)  # let intents written at the same moment become visible
            deadline = time.time() + timeout_s
            while True:
                now_ms = time.time() * 1000
                live = sorted(
                    k
                    for k in self.client.get_registered_model(self.name).tags
                    if k.startswith(INTENT_PREFIX) and now_ms - _intent_ms(k) < STALE_INTENT_S * 1000
                )
                if not live or live[0] == key:
                    break
                if time.time() > deadline:
                    raise FlowopsError(
                        f"model {self.name}: another promote has held the registry for over {timeout_s:.0f} s "
                        f"({live[0]})"
                    )
                time.sleep(0.2)
            yield
        finally:
            self.client.delete_registered_model_tag(self.name, key)


def _intent_ms(key: str) -> float:
    """When an intent tag was written; a tag that does not parse counts as stale (ignored)."""
    stamp = key[len(INTENT_PREFIX) :].split(".")[0]
    return float(stamp) if stamp.isdigit() else 0.0
