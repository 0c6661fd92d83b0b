"""Every registry and tracking call flowops makes, with typed outcomes: absent, or an error.

MLflow raises one exception class for "not there", for a refused permission, for a 5xx and
for a server that never answered. A promotion decided on a failed read would check a
candidate against nobody, so flowops tells them apart by MLflow's `error_code` and nothing
else: `RESOURCE_DOES_NOT_EXIST` (and, for an alias, `INVALID_PARAMETER_VALUE` saying the alias
is not found) is absence; every other failure is a `RegistryError`, one line naming the
server, the call and the code, and the command stops before it moves anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flowops.errors import FlowopsError
from flowops.redact import redact

ABSENT = "RESOURCE_DOES_NOT_EXIST"
# Most specific first: the first one found is the reason given.
UNREACHABLE = ("Connection refused", "timed out", "Connection aborted", "Failed to establish", "Max retries exceeded")


class RegistryError(FlowopsError):
    """A tracking-server call failed: not an absence. `code` is MLflow's error code, if any."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def client_uri(client: Any) -> str:
    """The tracking URI a client talks to (for messages; credentials removed)."""
    tracking = getattr(client, "_tracking_client", None)
    return redact(getattr(tracking, "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI", "?"))


def failure(uri: str, call: str, exc: Exception) -> RegistryError:
    """One line for a failed call: which server, which call, what MLflow said."""
    text = (getattr(exc, "message", None) or str(exc)).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    code = str(getattr(exc, "error_code", "") or "")
    if "error responses" in text:  # retries used up on 5xx answers
        status = next((w for w in text.split("too many ")[-1].split() if w.isdigit()), "5xx")
        return RegistryError(f"tracking server {uri} failed {call}: HTTP {status} on every try", code)
    if any(marker in text for marker in UNREACHABLE):
        reason = next(marker for marker in UNREACHABLE if marker in text)
        return RegistryError(f"tracking server {uri} cannot be reached: {call}: {reason}", code)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return RegistryError(f"tracking server {uri} refused {call}: {code}: {first}", code)
    return RegistryError(f"tracking server {uri}: {call} failed: {code or type(exc).__name__}: {first}", code)


class CheckedClient:
    """An MlflowClient whose every failed call raises RegistryError (nothing reads as absent here).

    Reads that may legitimately find nothing go through `absent_or_raise`, which returns None
    only for the error codes that mean absence.
    """

    def __init__(self, client: Any):
        self.raw = client
        self.uri = client_uri(client)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self.call(name, attr, *args, **kwargs)

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            raise failure(self.uri, name, exc) from None

    def absent_or_raise(self, name: str, *args: Any, alias: bool = False) -> Any:
        """`client.NAME(*args)`, or None when MLflow says there is no such thing."""
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.raw, name)(*args)
        except MlflowException as exc:
            if exc.error_code == ABSENT:
                return None
            # MLflow 3.17 answers a missing alias with INVALID_PARAMETER_VALUE "... alias X not found."
            if (
                alias
                and exc.error_code == "INVALID_PARAMETER_VALUE"
                and "alias" in exc.message
                and "not found" in exc.message
            ):
                return None
            raise failure(self.uri, name, exc) from None


def checked(client: Any) -> CheckedClient:
    return client if isinstance(client, CheckedClient) else CheckedClient(client)
