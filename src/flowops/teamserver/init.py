"""`flowops server-init`: the admin's one-time set-up of the registry for the two identities.

The *trainer* (CI training jobs) creates runs and nothing else; the *promoter* (the promote job,
in a protected environment) holds MANAGE on the registered model. Whoever creates a registered
model owns it, so the admin creates it here, before any promote, and grants the promoter.
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
        try:
            auth.grant_user_permission(user, RESOURCE, model, permission)
        except Exception as exc:  # the auth client raises MlflowException or requests' errors alike
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise RegistryError(f"cannot grant {user!r} {permission} on {model!r}: {reason}") from None
        lines.append(f"granted {user!r} {permission} on {model!r}")
    return lines
