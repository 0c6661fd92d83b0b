"""The authentication function `flowops server --auth` gives MLflow's basic-auth app.

MLflow's basic auth lets every authenticated user create a registered model, and the creator
owns it (MANAGE): a trainer could create the team's model before the admin does and move its
aliases. On a flowops server only an admin creates registered models (`flowops server-init`);
everything else is MLflow's own basic auth, unchanged.

MLflow calls this for every protected request (`authorization_function` in the auth config),
before its own permission checks: it answers with the user's `Authorization`, or a `Response`
that MLflow returns as it is.
"""

from __future__ import annotations

from typing import Any

CREATE_REGISTERED_MODEL = "/mlflow/registered-models/create"  # under /api/2.0 and /ajax-api/2.0
REFUSED = "only an admin creates registered models on this server (flowops server-init); whoever creates one owns it"


def authenticate() -> Any:
    """MLflow's basic-auth check, then: a non-admin's request to create a registered model
    gets 403 PERMISSION_DENIED."""
    import mlflow.server.auth as auth
    from flask import request

    authorization = auth.authenticate_request_basic_auth()
    if not isinstance(authorization, auth.Authorization):
        return authorization  # MLflow's own 401
    if request.method == "POST" and request.path.endswith(CREATE_REGISTERED_MODEL):
        # Not auth.sender_is_admin(): it authenticates again, through this function.
        if not authorization.username or not auth.store.get_user(authorization.username).is_admin:
            return _forbidden()
    return authorization


def _forbidden() -> Any:
    from flask import jsonify

    response = jsonify(error_code="PERMISSION_DENIED", message=REFUSED)
    response.status_code = 403
    return response
