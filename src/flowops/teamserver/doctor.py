"""`flowops doctor`: from a client, check the tracking server the way training will use it."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from flowops.redact import redact

DOCTOR_EXPERIMENT = "flowops-doctor"


@dataclass
class Result:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def _denied(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or "401" in str(exc) or "403" in str(exc)


def run_checks(uri: str, expect: str = "read-write", model: str | None = None) -> list[Result]:
    """One Result per check; stops early when the server does not answer at all."""
    # Fail fast: a doctor that retries for minutes is no help.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    from mlflow.tracking import MlflowClient

    shown = redact(uri)
    results = []
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=10)
            ok = response.status_code == 200
            results.append(Result("server", ok, f"{shown} answers /health with {response.status_code}"))
        except requests.RequestException as exc:
            return [Result("server", False, f"{shown} does not answer: {type(exc).__name__}")]
    else:
        results.append(Result("server", True, f"{shown} is a local store (no server)"))
    client = MlflowClient(uri)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    try:
        client.search_experiments(max_results=1)
        results.append(Result("credentials", True, f"accepted for {user}" if user else "none needed"))
    except Exception as exc:
        if _denied(exc):
            hint = "rejected" if user else "required: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            return [*results, Result("credentials", False, f"{hint} ({_reason(exc)})")]
        return [*results, Result("credentials", False, _reason(exc))]
    results.append(_artifact_round_trip(client, uri))
    results.append(_registry(client, expect, model))
    return results


def _artifact_round_trip(client, uri: str) -> Result:
    from flowops.tracking import ensure_experiment

    try:
        experiment_id = ensure_experiment(DOCTOR_EXPERIMENT, uri)
        run = client.create_run(experiment_id, run_name="doctor")
        text = f"flowops doctor {uuid.uuid4().hex}\n"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "probe.txt").write_text(text)
                client.log_artifact(run.info.run_id, str(Path(tmp) / "probe.txt"))
                back = Path(client.download_artifacts(run.info.run_id, "probe.txt", tmp + "/down")).read_text()
        finally:
            client.delete_run(run.info.run_id)
        if back != text:
            return Result("artifacts", False, "the file read back differs from the one written")
        return Result(
            "artifacts", True, f"round trip through {run.info.artifact_uri.split('/' + run.info.run_id)[0]} works"
        )
    except Exception as exc:
        return Result("artifacts", False, f"{type(exc).__name__}: {_reason(exc)}")


def _registry(client, expect: str, model: str | None) -> Result:
    """Can these credentials write to the team's model (promote needs that)?

    Any signed-in user may create a new model, so the probe writes a tag on `model` when it
    exists, and creates and deletes a scratch model only when it does not.
    """
    from mlflow.exceptions import MlflowException

    existing = None
    if model:
        try:
            existing = client.get_registered_model(model)
        except MlflowException as exc:
            if _denied(exc):
                return Result("registry", expect == "read-only", f"model {model!r} cannot even be read")
    try:
        if existing is not None:
            client.set_registered_model_tag(model, "flowops.doctor", "probe")
            client.delete_registered_model_tag(model, "flowops.doctor")
            target = f"model {model!r}"
        else:
            name = f"flowops-doctor-{uuid.uuid4().hex[:8]}"
            client.create_registered_model(name)
            client.delete_registered_model(name)
            target = "a new model" + (f" ({model!r} does not exist yet)" if model else "")
        writable = True
    except Exception as exc:
        if not _denied(exc):
            return Result("registry", False, _reason(exc))
        writable, target = False, f"model {model!r}" if existing is not None else "a new model"
    if expect == "read-only":
        return Result(
            "registry",
            not writable,
            f"{target} is read-only, as expected"
            if not writable
            else f"{target} is writable, but read-only was expected",
        )
    return Result(
        "registry",
        writable,
        f"{target} is writable"
        if writable
        else f"{target} is read-only, but write access was expected (promote needs it)",
    )
