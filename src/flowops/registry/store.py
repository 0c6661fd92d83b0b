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
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, cast

from flowops.errors import FlowopsError
from flowops.processes import running
from flowops.registry.access import RegistryError, checked

AUDIT_PREFIX = "flowops.audit."
INTENT_PREFIX = "flowops.intent."
HOLD_PREFIX = "flowops.hold."  # + alias: a break-glass rollback that reconciliation leaves alone
APPLIED_TAG = "flowops.applied_commit"  # the newest main commit the registry was reconciled to
STALE_INTENT_S = 60  # an intent unchanged this long (its holder beats every HEARTBEAT_S) belongs to a dead process
HEARTBEAT_S = 5
STALE_ENV = "FLOWOPS_LOCK_STALE_S"  # a testing knob: STALE_INTENT_S in seconds (heartbeat and fence scale with it)
WAIT_S = 900  # how long a promote waits in line for others that keep beating


def stale_s() -> float:
    try:
        return max(float(os.environ.get(STALE_ENV, STALE_INTENT_S)), 1.0)
    except ValueError:
        return float(STALE_INTENT_S)


class Lease:
    """This process's place in the registry lock, kept by its heartbeat (the fence for its writes).

    A waiter removes an intent only after seeing it unchanged for stale_s() on its own clock, and a
    beat changes it: so while this process's last successful beat is under 3/4 of that old, nobody
    can have removed it. The heartbeat never writes past that point (a paused process that resumes
    would re-create an intent another promote has already judged dead), and every registry write
    made under the lock checks it first: a promote that lost its place moves nothing more."""

    def __init__(self, model: str, key: str):
        self.model, self.key = model, key
        self.last_ok = time.monotonic()
        self.lost = ""

    def fresh(self) -> bool:
        return not self.lost and time.monotonic() - self.last_ok < 0.75 * stale_s()

    def check(self) -> None:
        if not self.fresh():
            why = self.lost or f"no heartbeat for {time.monotonic() - self.last_ok:.0f} s"
            raise FlowopsError(
                f"model {self.model}: this promote lost its place in the registry lock ({why}; another promote may "
                "hold it now): it moves nothing more; run it again"
            )


class _Fenced:
    """The registry client while the lock is held: each write checks the lease first."""

    WRITES = ("set_", "delete_", "create_", "transition_", "update_", "rename_", "copy_")

    def __init__(self, client: Any, lease: Lease):
        self._client, self._lease = client, lease

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if callable(value) and name.startswith(self.WRITES):

            def fenced(*args: Any, **kwargs: Any) -> Any:
                self._lease.check()
                return value(*args, **kwargs)

            return fenced
        return value


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
    state: str = "done"  # pending: written before the alias moved; done once it has (records before 0.2: done)

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
        """Point `alias` at `version`, audit record first; when the move answers an error, the record is
        settled by what the registry then says (done if the alias moved, removed if it did not, left
        pending for the next command's repair if the registry cannot say)."""
        version = str(version)
        record.to_version = version
        record.from_version = None if record.from_version is None else str(record.from_version)
        record.key = self._next_audit_key()
        # Journal: pending record -> alias move -> record done. A process killed in between leaves a
        # pending record that the next command settles (`repair`): done if the alias moved, else removed.
        record.state = "pending"
        self._write_record(record)
        try:
            self.client.set_registered_model_alias(self.name, alias, version)
        except Exception:
            # The server may have applied it before the error (a timeout after the write, a proxy's
            # 5xx): the journal settles that, never a guess. Moved: go on as if it had answered.
            if not self._settled_after_error(alias, version, record):
                raise
        record.state = "done"
        self._write_record(record)
        if legacy_stages:
            self.mirror_stages([v for v in (version, record.from_version) if v], archive_previous)
        if archive_previous and record.from_version and record.from_version != version:
            previous = self.version(record.from_version)
            if previous is not None and not previous.aliases:
                self.client.set_model_version_tag(self.name, record.from_version, "flowops.status", "archived")
        self.client.set_model_version_tag(self.name, version, "flowops.status", "live")
        return record

    def _settled_after_error(self, alias: str, version: str, record: AuditRecord) -> bool:
        """After a failed alias move: True when the alias did move; else the pending record is removed
        (it did not move) or left for `repair` (the registry could not say), and False."""
        try:
            holder = self.holder(alias)
        except Exception:
            return False  # unknown: the pending record stays; the next command's repair settles it
        if holder is not None and str(holder.version) == version:
            return True
        try:
            self.client.delete_registered_model_tag(self.name, record.key)
        except Exception:
            pass  # it stays pending, and repair removes it: the alias is not at `version`
        return False

    def _next_audit_key(self) -> str:
        """Audit keys sort in the order the moves were made (under the lock), whatever the clocks say."""
        tags = self.client.get_registered_model(self.name).tags
        numbers = [k[len(AUDIT_PREFIX) :].split(".")[0] for k in tags if k.startswith(AUDIT_PREFIX)]
        last = max((int(n) for n in numbers if n.isdigit()), default=0)
        return f"{AUDIT_PREFIX}{max(int(time.time() * 1000), last + 1):013d}.{uuid.uuid4().hex[:8]}"

    def _write_record(self, record: AuditRecord) -> None:
        value = {k: v for k, v in asdict(record).items() if k != "key"}
        value["summary"] = value["summary"][:2000]
        self.client.set_registered_model_tag(self.name, record.key, json.dumps(value))

    def repair(self) -> list[str]:
        """Settle journal records a killed process left pending; one line per record settled."""
        settled = []
        for record in [r for r in self.history() if r.state == "pending"]:
            holder = self.holder(record.alias)
            if holder is not None and str(holder.version) == record.to_version:
                record.state = "done"
                self._write_record(record)
                settled.append(f"{record.alias}: the move to v{record.to_version} happened; its record is now done")
            else:
                self.client.delete_registered_model_tag(self.name, record.key)
                settled.append(
                    f"{record.alias}: the move to v{record.to_version} never happened; its record is removed"
                )
        for alias, hold in self.holds().items():
            released = self.release_if_not_at(alias, hold)
            if released:
                settled.append(released)
        return settled

    def release_if_not_at(self, alias: str, hold: dict[str, str] | None = None) -> str | None:
        """Release `alias`'s hold (read here unless given) when the alias is not at the held version
        (the rollback that set it never moved it: it failed, or its process died in between); one
        line saying so, or None."""
        hold = self.holds().get(alias) if hold is None else hold
        if hold is None:
            return None
        current = self.holder(alias)
        have = None if current is None else str(current.version)
        if have == hold.get("version"):
            return None
        self.release(alias)
        return (
            f"{alias}: held at v{hold.get('version')} but at {'v' + have if have else 'no version'}: the rollback "
            "that set the hold never moved it; hold released"
        )

    def holds(self) -> dict[str, dict[str, str]]:
        """alias -> the break-glass hold on it (version, time, user, reason)."""
        tags = self.client.get_registered_model(self.name).tags
        out = {}
        for key, value in tags.items():
            if key.startswith(HOLD_PREFIX):
                try:
                    out[key[len(HOLD_PREFIX) :]] = dict(json.loads(value))
                except (ValueError, TypeError):
                    self.malformed.append(key)
        return out

    def hold(self, alias: str, version: str, when: str, reason: str) -> None:
        value = {"version": str(version), "time": when, "user": tracking_user(), "actor": actor(), "reason": reason}
        self.client.set_registered_model_tag(self.name, HOLD_PREFIX + alias, json.dumps(value))

    def release(self, alias: str) -> None:
        self.client.delete_registered_model_tag(self.name, HOLD_PREFIX + alias)

    def applied_commit(self) -> str | None:
        model = self.client.absent_or_raise("get_registered_model", self.name)
        return None if model is None else model.tags.get(APPLIED_TAG)

    def set_applied_commit(self, commit: str) -> None:
        self.client.set_registered_model_tag(self.name, APPLIED_TAG, commit)

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
            record = _audit_record(key, value)
            if record is None:
                self.malformed.append(key)
            else:
                records.append(record)
        return [r for r in records if alias is None or r.alias == alias]

    @contextmanager
    def exclusive(self, timeout_s: float = WAIT_S) -> Iterator[None]:
        """Serialise promotes and rollbacks of this model without trusting anyone's clock.

        Each process writes an intent tag, reads which intents were there (its `seen` set) and
        publishes that set in its intent. Another intent is ahead of mine if I saw it and it did
        not see me, or we saw each other and its key sorts first: every pair agrees, and an
        intent that arrives while one holds the lock finds it in its `seen` set and waits.
        Every intent, waiting or holding, is rewritten every few seconds (a heartbeat); a waiter that
        sees an intent unchanged for stale_s() on its own monotonic clock (at once, for a dead
        process of this host) removes it. A process whose own intent was removed, or whose heartbeat
        could not keep it fresh, has lost its place: it moves nothing (the Lease fences its writes).
        Wall clocks decide nothing.
        """
        key = f"{INTENT_PREFIX}{uuid.uuid4().hex}"
        me: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "beat": 0, "seen": None}
        raw = self.client
        raw.set_registered_model_tag(self.name, key, json.dumps(me))
        lease = Lease(self.name, key)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(raw, lease, me, stop), daemon=True)
        try:
            me["seen"] = sorted(k for k in self._intents() if k != key)
            sent = time.monotonic()
            raw.set_registered_model_tag(self.name, key, json.dumps(me))
            lease.last_ok = sent
            beat.start()  # waiting too: a waiter that stops beating is judged dead by the others
            observed: dict[str, tuple[str, float]] = {}  # key -> (value, when it last changed, my monotonic clock)
            deadline = time.monotonic() + timeout_s
            while True:
                intents = self._intents()
                now = time.monotonic()
                if key not in intents:
                    lease.lost = lease.lost or "its intent was removed as stale while it waited"
                lease.check()
                for other, value in intents.items():
                    if other != key and observed.get(other, ("", 0.0))[0] != value:
                        observed[other] = (value, now)
                dead = [
                    k for k, (v, since) in observed.items() if k in intents and (now - since >= stale_s() or _gone(v))
                ]
                for stale in dead:
                    self._drop(stale)
                ahead = [k for k, v in intents.items() if k != key and k not in dead and _ahead(k, v, key, me["seen"])]
                if not ahead:
                    break
                if now > deadline:
                    raise FlowopsError(
                        f"model {self.name}: another promote has held the registry for over {timeout_s:.0f} s "
                        f"({ahead[0]})"
                    )
                time.sleep(0.2)
            self.client = cast(Any, _Fenced(raw, lease))  # the same calls, each write fenced
            try:
                lease.check()
                yield
            finally:
                self.client = raw
        finally:
            stop.set()
            if beat.is_alive():
                beat.join(timeout=2 * HEARTBEAT_S)
            if not lease.lost:  # a lost intent may be someone else's judgement already: leave it to them
                self._drop(key)

    def _intents(self) -> dict[str, str]:
        tags = self.client.get_registered_model(self.name).tags
        return {k: v for k, v in tags.items() if k.startswith(INTENT_PREFIX)}

    def _heartbeat(self, raw: Any, lease: Lease, me: dict, stop: threading.Event) -> None:
        """Keep the intent fresh; never write once it may have been judged dead (see Lease)."""
        while not stop.wait(min(HEARTBEAT_S, stale_s() / 12)):
            if not lease.fresh():
                lease.lost = lease.lost or f"no heartbeat for {time.monotonic() - lease.last_ok:.0f} s"
                return
            try:
                if lease.key not in {k for k in raw.get_registered_model(self.name).tags}:
                    lease.lost = "its intent was removed as stale"
                    return
                me["beat"] += 1
                sent = time.monotonic()  # the change is applied after this: nobody sees it older
                raw.set_registered_model_tag(self.name, lease.key, json.dumps(me))
                lease.last_ok = sent
            except RegistryError:
                continue  # the next beat tries again; past 3/4 of stale_s() the lease is lost

    def _drop(self, key: str) -> None:
        try:
            self.client.delete_registered_model_tag(self.name, key)
        except RegistryError as exc:  # another waiter removed it first
            if exc.code != "RESOURCE_DOES_NOT_EXIST":
                raise


def describe_hold(alias: str, hold: dict[str, str]) -> str:
    return (
        f"held at v{hold.get('version')} by rollback on {hold.get('time', '?')} by {hold.get('user', '?')} "
        f"({hold.get('reason', 'no reason given')}); release it with flowops release --alias {alias}"
    )


def _audit_record(key: str, value: str) -> AuditRecord | None:
    """The record a tag holds, or None when it is not one flowops wrote (not JSON, fields missing,
    unknown, or of the wrong type): such a tag is skipped and reported, never trusted."""
    try:
        fields = json.loads(value)
        record = AuditRecord(**fields, key=key)
    except (ValueError, TypeError):
        return None
    optional = {"from_version", "pr", "commit", "policy_sha256"}
    for name, field_value in asdict(record).items():
        if not (isinstance(field_value, str) or (field_value is None and name in optional)):
            return None
    return record if record.state in ("pending", "done") and record.to_version else None


def _ahead(other: str, value: str, mine: str, my_seen: list[str] | None) -> bool:
    """Whether intent `other` goes before mine (both sides of a pair compute the same answer)."""
    try:
        their_seen = json.loads(value).get("seen")
    except (ValueError, TypeError, AttributeError):
        return False  # not an intent flowops wrote: ignored
    if their_seen is not None and not (isinstance(their_seen, list) and all(isinstance(k, str) for k in their_seen)):
        return False  # not an intent flowops wrote: ignored
    if their_seen is None:
        return True  # it has not published what it saw yet: wait for it
    i_saw, they_saw = other in (my_seen or []), mine in their_seen
    if i_saw and they_saw:
        return other < mine
    return i_saw


def _gone(value: str) -> bool:
    """Whether an intent names a process of this host that no longer runs."""
    try:
        owner = json.loads(value)
        if owner.get("host") != socket.gethostname():
            return False
        return not running(int(owner["pid"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return False
