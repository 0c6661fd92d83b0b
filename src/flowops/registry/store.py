"""The MLflow Model Registry as flowops uses it: aliases first, an audit trail, a queue.

MLflow keeps no history of which version held an alias when, and has no rollback. flowops
writes one audit record per alias move as a tag on the registered model
(`flowops.audit.<time>.<random>` -> JSON), *before* moving the alias, and removes it again
if the move fails: no alias moves without its record. Concurrent promotes queue through
intent tags (`flowops.intent.<time>.<random>`): the oldest live intent goes first.
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

from flowops.errors import FlowopsError
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
    actor: str
    pr: str | None
    commit: str | None
    policy_sha256: str | None
    summary: str
    key: str = ""


def actor() -> str:
    return os.environ.get("GITHUB_ACTOR") or getpass.getuser()


def _unique_key(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000):013d}.{uuid.uuid4().hex[:8]}"


class Registry:
    def __init__(self, client, model_name: str):
        self.client, self.name = client, model_name

    def model_exists(self) -> bool:
        """Whether the registered model exists (the one place that asks)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException:
            return False

    def ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        if not self.model_exists():
            try:
                self.client.create_registered_model(
                    self.name, description="Promoted by flowops from merged experiments."
                )
            except MlflowException:  # created concurrently by another promote
                self.client.get_registered_model(self.name)

    def holder(self, alias: str):
        """The ModelVersion holding `alias`, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None

    def holders(self, aliases) -> dict[str, Holder | None]:
        """Each alias's holder with the metrics of the run that produced it."""
        out = {}
        for alias in aliases:
            mv = self.holder(alias)
            out[alias] = (
                None if mv is None else Holder(str(mv.version), dict(self.client.get_run(mv.run_id).data.metrics))
            )
        return out

    def version_for_run(self, run_id: str):
        found = self.client.search_model_versions(f"name = '{self.name}' and run_id = '{run_id}'")
        return min(found, key=lambda mv: int(mv.version)) if found else None

    def register(self, run, tags: dict[str, str]):
        """(version, created): the version made from `run`, created once with all its tags."""
        from mlflow.exceptions import MlflowException

        existing = self.version_for_run(run.info.run_id)
        if existing is not None:
            return existing, False
        model_id = self.logged_model_id(run)
        try:
            # One call creates the version with its tags: no untagged orphan if we stop here.
            mv = self.client.create_model_version(
                self.name, f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id
            )
        except MlflowException as exc:
            raise FlowopsError(
                f"run {run.info.run_id}: cannot register its model: {exc.message.splitlines()[0]}"
            ) from None
        return mv, True

    def logged_model_id(self, run, name: str = "model") -> str:
        """The id of the model the run logged under `name` (the last one, if logged twice)."""
        outputs = sorted((run.outputs.model_outputs if run.outputs else []), key=lambda o: o.step)
        for output in reversed(outputs):
            if self.client.get_logged_model(output.model_id).name == name:
                return output.model_id
        raise FlowopsError(
            f"run {run.info.run_id} has no logged model {name!r}: it did not finish training; retrain it"
        )

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
            previous = self.client.get_model_version(self.name, record.from_version)
            if not previous.aliases:
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
        tags = self.client.get_registered_model(self.name).tags
        records = [AuditRecord(**json.loads(v), key=k) for k, v in sorted(tags.items()) if k.startswith(AUDIT_PREFIX)]
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
                    if k.startswith(INTENT_PREFIX)
                    and now_ms - int(k[len(INTENT_PREFIX) :].split(".")[0]) < STALE_INTENT_S * 1000
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
