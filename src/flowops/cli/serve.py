"""CLI command for serving: `flowops serve` follows a registry alias over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import click

from flowops.errors import FlowopsError


@click.command()
@click.option("--model", help="Registered model (default: model_name of ./registry_policy.yaml).")
@click.option("--alias", default="production", show_default=True, help="The alias to follow.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--poll", type=click.FloatRange(0.2, 3600), default=10.0, show_default=True, help="Seconds between registry polls."
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(0.01, 1024),
    default=10.0,
    show_default=True,
    help="Largest request body; larger gets 413.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=25_000_000,
    show_default=True,
    help="Largest image (width x height); larger gets 413.",
)
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).")
def serve(model, alias, host, port, poll, max_body_mb, max_pixels, tracking_uri) -> None:
    """Serve models:/MODEL@ALIAS over HTTP and follow the alias: new versions are swapped in live."""
    import threading

    import uvicorn
    from mlflow.tracking import MlflowClient

    from flowops import tracking
    from flowops.serving.app import create_app
    from flowops.serving.follower import AliasFollower

    # The poll loop is the retry: one registry call must not block it for minutes of backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if model is None:
        from flowops.spec.load import policy_or_error

        if not Path("registry_policy.yaml").is_file():
            raise FlowopsError("--model is required here (no registry_policy.yaml to read model_name from)")
        model = policy_or_error("registry_policy.yaml").model_name
    follower = AliasFollower(MlflowClient(tracking.use(tracking_uri)), model, alias, poll)
    first = follower.check_alias()  # a missing alias is a clear error before anything listens
    threading.Thread(target=follower.run, args=(first,), name="alias-follower", daemon=True).start()
    click.echo(
        f"serving models:/{model}@{alias} (v{first.version} loading) on http://{host}:{port}; polling every {poll:g} s"
    )
    try:
        uvicorn.run(
            create_app(follower, int(max_body_mb * 2**20), max_pixels), host=host, port=port, log_level="warning"
        )
    finally:
        follower.stop()


COMMANDS = [serve]
