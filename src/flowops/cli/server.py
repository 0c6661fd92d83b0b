"""CLI commands for the team tracking server: server (start it) and doctor (check it from a client)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from flowops.errors import FlowopsError


@click.command()
@click.option(
    "--backend-store-uri",
    envvar="FLOWOPS_BACKEND_STORE_URI",
    required=True,
    help="postgresql://user@host:5432/db (env FLOWOPS_BACKEND_STORE_URI).",
)
@click.option(
    "--artifacts-destination",
    envvar="FLOWOPS_ARTIFACTS_DESTINATION",
    help="Proxied artifacts: the server writes here, e.g. sftp://mlflow@files/upload.",
)
@click.option(
    "--default-artifact-root",
    envvar="FLOWOPS_DEFAULT_ARTIFACT_ROOT",
    help="Direct artifacts: clients write here themselves (as in the original article).",
)
@click.option(
    "--host",
    envvar="FLOWOPS_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (behind a TLS reverse proxy in production).",
)
@click.option("--port", envvar="FLOWOPS_PORT", type=int, default=5000, show_default=True, help="Port to listen on.")
@click.option(
    "--workers", envvar="FLOWOPS_WORKERS", type=int, default=2, show_default=True, help="Server worker processes."
)
@click.option(
    "--auth/--no-auth",
    envvar="FLOWOPS_AUTH",
    default=False,
    help="MLflow basic auth; admin from FLOWOPS_ADMIN_USERNAME / FLOWOPS_ADMIN_PASSWORD.",
)
@click.option(
    "--default-permission",
    envvar="FLOWOPS_DEFAULT_PERMISSION",
    default="READ",
    show_default=True,
    help="What authenticated users may do by default.",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(tempfile.gettempdir()),
    show_default=True,
    help="Where a private folder (mode 0700) for the generated basic-auth config (mode 0600) is made.",
)
@click.option("--check-only", is_flag=True, help="Run the checks and exit without starting the server.")
def server(
    backend_store_uri,
    artifacts_destination,
    default_artifact_root,
    host,
    port,
    workers,
    auth,
    default_permission,
    config_dir,
    check_only,
) -> None:
    """Start the team MLflow tracking server after checking its database and artifact store."""
    from flowops.teamserver import server as srv

    settings = srv.ServerSettings(
        backend_store_uri,
        artifacts_destination,
        default_artifact_root,
        host,
        port,
        workers,
        auth,
        os.environ.get("FLOWOPS_ADMIN_USERNAME"),
        os.environ.get("FLOWOPS_ADMIN_PASSWORD"),
        default_permission,
    )
    click.echo("ok   " + srv.check_backend(settings.backend_store_uri))
    click.echo("ok   " + srv.check_artifacts(settings.artifact_uri))
    if check_only:
        return
    env = srv.environment(settings, config_dir)
    cmd = srv.command(settings)
    click.echo(f"starting: {' '.join(srv.redact(c) for c in cmd)}")
    sys.stdout.flush()
    executable = Path(sys.executable).with_name("mlflow")
    os.execve(
        str(executable), [str(executable), *cmd[1:]], env
    )  # the server replaces this process (systemd sees mlflow)


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).")
@click.option(
    "--expect",
    type=click.Choice(["read-write", "read-only"]),
    default="read-write",
    show_default=True,
    help="The registry access these credentials should have.",
)
@click.option("--model", help="Registered model to probe (default: model_name of ./registry_policy.yaml, if present).")
def doctor(tracking_uri: str | None, expect: str, model: str | None) -> None:
    """Check the tracking server from here: it answers, credentials work, artifacts round-trip, registry access."""
    from flowops import tracking
    from flowops.teamserver.doctor import run_checks

    if model is None and Path("registry_policy.yaml").is_file():
        from flowops.errors import ProblemsError
        from flowops.spec.load import load_policy

        try:
            model = load_policy("registry_policy.yaml").model_name
        except ProblemsError:
            model = None
    results = run_checks(tracking.resolve_uri(tracking_uri), expect, model)
    for result in results:
        click.echo(str(result))
    failed = [r for r in results if not r.ok]
    if failed:
        raise FlowopsError(f"doctor: {len(failed)} check(s) failed")


@click.command("server-init")
@click.option("--model", required=True, help="The registered model merges promote into (model_name of the policy).")
@click.option("--promoter", help="The promote job's user: gets MANAGE on the model.")
@click.option("--trainer", help="The training jobs' user: READ on the model (it may log runs, never move aliases).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI).")
def server_init(model: str, promoter: str | None, trainer: str | None, tracking_uri: str | None) -> None:
    """As the admin: create the registered model and grant the promoter and trainer identities."""
    from mlflow.tracking import MlflowClient

    from flowops import tracking
    from flowops.teamserver.init import init_registry

    tracking.bounded_http()
    uri = tracking.use(tracking_uri)
    auth = None
    if promoter or trainer:
        import warnings

        with warnings.catch_warnings():  # mlflow.server's imports warn about starlette: not ours to print
            warnings.simplefilter("ignore")
            from mlflow.server import get_app_client

            auth = get_app_client("basic-auth", tracking_uri=uri)
    for line in init_registry(MlflowClient(uri), auth, model, promoter, trainer):
        click.echo(line)


COMMANDS = [server, doctor, server_init]
