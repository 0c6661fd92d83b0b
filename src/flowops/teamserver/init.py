"""`flowops server-init`: the admin's one-time set-up of the registry for the two identities.

The *trainer* (CI training jobs) creates runs and nothing else; the *promoter* (the promote job,
in a protected environment) holds MANAGE on the registered model. Whoever creates a registered
model owns it, so the admin creates it here, before any promote, and grants the promoter.
Rerunnable: each identity ends with exactly its permission, whatever it had (a trainer that
created the model first held MANAGE on it: set back to READ).
"""

from __future__ import annotations

from typing import Any

from flowops.errors import FlowopsError
from flowops.registry.access import RegistryError, checked

RESOURCE = "registered_model"


def init_registry(client: Any, auth: Any, model: str, promoter: str | None, trainer: str | None) -> list[str]:
    """Create `model` (as the caller, the admin) and grant the identities; one line per step done."""
    lines = []
    checked_client = checked(client)
    if checked_client.absent_or_raise("get_registered_model", model) is None:
        checked_client.create_registered_model(model, description="Promoted by flowops from merged experiments.")
        lines.append(f"created registered model {model!r}")
    else:
        lines.append(f"registered model {model!r} exists")
    grants = [(user, permission) for user, permission in ((promoter, "MANAGE"), (trainer, "READ")) if user]
    if grants and auth is None:
        raise FlowopsError("--promoter/--trainer need a server with basic auth (flowops server --auth)")
    for user, permission in grants:
        lines.append(_grant_exactly(auth, user, permission, model))
    return lines


def _grant_exactly(auth: Any, user: str, permission: str, model: str) -> str:
    """`user` ends with exactly `permission` on `model`, whatever it had (rerunnable): one line
    naming what it had before when that differs (a creator's MANAGE, the server's default)."""

    def failed(step: str, exc: Exception) -> RegistryError:  # MlflowException or requests' errors alike
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return RegistryError(f"cannot {step} {user!r} {permission} on {model!r}: {reason}")

    try:
        had = auth.get_user_permission(user, RESOURCE, model).permission
    except Exception as exc:
        raise failed("read the permission of", exc) from None
    try:  # an explicit grant even when the default already gives it: a later default cannot widen it
        auth.grant_user_permission(user, RESOURCE, model, permission)
    except Exception as exc:
        if "ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise failed("grant", exc) from None
        try:  # a server whose grant does not replace: take the old one away first
            auth.revoke_user_permission(user, RESOURCE, model)
            auth.grant_user_permission(user, RESOURCE, model, permission)
        except Exception as again:
            raise failed("set", again) from None
    if had == permission:
        return f"{user!r} has {permission} on {model!r}"
    return f"granted {user!r} {permission} on {model!r} (it had {had})"
