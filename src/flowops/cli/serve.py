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
    help="Largest image (width x height; a side of more than 65535 pixels is refused too); larger gets 413.",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(1, 1024),
    default=4,
    show_default=True,
    help="Predictions in flight at once; beyond, /predict answers 503 with Retry-After.",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Threads that decode and predict."
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a request body may take to arrive whole; slower gets 408 (a slow upload holds no prediction slot).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file holding the bearer token /predict and /metrics require (or $FLOWOPS_SERVE_TOKEN); /health stays open.",
)
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).")
def serve(  # one parameter per option
    model,
    alias,
    host,
    port,
    poll,
    max_body_mb,
    max_pixels,
    max_concurrent,
    workers,
    body_timeout,
    token_file,
    tracking_uri,
) -> None:
    """Serve models:/MODEL@ALIAS over HTTP and follow the alias: new versions are swapped in live."""
    import threading

    import uvicorn
    from mlflow.tracking import MlflowClient

    from flowops import tracking
    from flowops.serving.app import Limits, create_app
    from flowops.serving.follower import AliasFollower

    # The poll loop is the retry: one registry call must not block it for minutes of backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if model is None:
        from flowops.spec.load import policy_or_error

        if not Path("registry_policy.yaml").is_file():
            raise FlowopsError("--model is required here (no registry_policy.yaml to read model_name from)")
        model = policy_or_error("registry_policy.yaml").model_name
    token = _token(token_file)
    listening = _listen(host, port)  # a taken port is said before anything claims to serve
    follower = AliasFollower(MlflowClient(tracking.use(tracking_uri)), model, alias, poll)
    first = follower.check_alias()  # a missing alias is a clear error before anything listens
    threading.Thread(target=follower.run, args=(first,), name="alias-follower", daemon=True).start()
    limits = Limits(int(max_body_mb * 2**20), max_pixels, max_concurrent, workers, token, body_timeout)
    click.echo(
        f"serving models:/{model}@{alias} (v{first.version} loading) on http://{host}:{port}; polling every {poll:g} s"
        + ("; /predict and /metrics need the bearer token" if token else "")
    )
    server = uvicorn.Server(uvicorn.Config(create_app(follower, limits), log_level="warning"))
    try:
        server.run(sockets=[listening])
    finally:
        follower.stop()


def _token(token_file: Path | None) -> str | None:
    """The bearer token from --token-file, else $FLOWOPS_SERVE_TOKEN; None when neither is set."""
    if token_file is None:
        return os.environ.get("FLOWOPS_SERVE_TOKEN") or None
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise FlowopsError(f"{token_file}: cannot read the token file ({exc.strerror})") from None
    if not token:
        raise FlowopsError(f"{token_file}: the token file is empty")
    return token


def _listen(host: str, port: int):
    """A listening socket on host:port, or a one-line error naming what holds it back."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FlowopsError(
            f"cannot listen on {host}:{port}: {exc.strerror} (is another service on that port?)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


COMMANDS = [serve]
