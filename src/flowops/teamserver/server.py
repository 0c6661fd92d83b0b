"""`flowops server`: the team tracking server, checked before it starts.

An MLflow server over a PostgreSQL backend store with SFTP artifacts, either proxied by
the server (`--artifacts-destination`: runners need no SFTP credentials) or written by the
clients directly (`--default-artifact-root`, as in the original article), optionally behind
MLflow's basic auth. Each setting is checked first and a failure says exactly what is wrong.
"""

from __future__ import annotations

import configparser
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from flowops.errors import FlowopsError
from flowops.processes import running
from flowops.redact import redact

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


@dataclass
class ServerSettings:
    backend_store_uri: str
    artifacts_destination: str | None = None  # proxied: the server writes artifacts
    default_artifact_root: str | None = None  # direct: the clients write artifacts
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    auth: bool = False
    admin_username: str | None = None
    admin_password: str | None = None
    default_permission: str = "READ"

    def __post_init__(self):
        if bool(self.artifacts_destination) == bool(self.default_artifact_root):
            raise FlowopsError(
                "give exactly one of --artifacts-destination (proxied) or --default-artifact-root (direct)"
            )
        if not 1 <= self.port <= 65535:
            raise FlowopsError(f"--port: must be 1-65535 (got {self.port})")
        if not 1 <= self.workers <= 64:
            raise FlowopsError(f"--workers: must be 1-64 (got {self.workers})")
        if self.default_permission not in PERMISSIONS:
            raise FlowopsError(
                f"--default-permission: must be one of {', '.join(PERMISSIONS)} (got {self.default_permission!r})"
            )
        if self.auth and not (self.admin_username and self.admin_password):
            raise FlowopsError("--auth needs FLOWOPS_ADMIN_USERNAME and FLOWOPS_ADMIN_PASSWORD in the environment")
        if self.auth:
            import importlib.util

            if importlib.util.find_spec("flask_wtf") is None:
                raise FlowopsError("--auth needs MLflow's auth app: pip install 'flowops-gitops[server]'")
        scheme = urlparse(self.backend_store_uri).scheme
        if scheme.split("+")[0] not in ("postgresql", "sqlite", "mysql"):
            raise FlowopsError(
                f"--backend-store-uri {redact(self.backend_store_uri)}: expected postgresql://, mysql:// or sqlite:///"
            )

    @property
    def artifact_uri(self) -> str:
        return self.artifacts_destination or self.default_artifact_root or ""


def check_backend(uri: str) -> str:
    """Connect to the backend store; one line saying what is wrong otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        folder = Path(parsed.path).parent
        if not os.access(folder, os.W_OK):
            raise FlowopsError(f"backend store {uri}: folder {folder} is not writable")
        return f"backend store {uri}: writable"
    if parsed.scheme.startswith("postgresql"):
        import psycopg

        plain = urlunparse(parsed._replace(scheme="postgresql"))
        try:
            with psycopg.connect(plain, connect_timeout=5) as conn:
                row = conn.execute("show server_version").fetchone()
                version = row[0] if row else "?"
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise FlowopsError(f"backend store {redact(uri)}: cannot connect: {reason}") from None
        return f"backend store {redact(uri)}: PostgreSQL {version}"
    return f"backend store {redact(uri)}: not checked"


def check_artifacts(uri: str) -> str:
    """Write, list and delete a probe through MLflow's own artifact repository for `uri`."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    probe = f"flowops-probe-{uuid.uuid4().hex[:8]}"
    with _quiet_pysftp():
        return _probe(get_artifact_repository, uri, probe)


@contextlib.contextmanager
def _quiet_pysftp():
    """pysftp warns about known_hosts and raises from __del__ after a failed connect: keep that off the terminal."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda *_: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gc.collect()
        sys.unraisablehook = hook


def _probe(get_artifact_repository, uri: str, probe: str) -> str:
    failure = None
    try:
        repo = get_artifact_repository(uri)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "probe.txt"
            path.write_text("flowops artifact store check\n")
            repo.log_artifact(str(path), probe)
            found = [f.path for f in repo.list_artifacts(probe)]
            repo.delete_artifacts(probe)
        if f"{probe}/probe.txt" not in found:
            failure = "wrote a probe file but cannot list it back"
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = (
            (
                " (check ~/.ssh/config: Host, User, Port, IdentityFile, an RSA PEM key for pysftp; and a "
                "~/.ssh/known_hosts line for the host without its port)"
            )
            if uri.startswith("sftp:")
            else ""
        )
        failure = f"{type(exc).__name__}: {reason}{hint}"
    # Raised outside the except block, so the failed connection is freed (and collected quietly).
    if failure:
        raise FlowopsError(f"artifact store {redact(uri)}: {failure}")
    return f"artifact store {redact(uri)}: write, list and delete work"


def auth_config(settings: ServerSettings, folder: Path) -> Path:
    """The basic-auth ini MLflow reads from MLFLOW_AUTH_CONFIG_PATH (mode 0600: it holds a password)."""
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": settings.default_permission,
        "database_uri": settings.backend_store_uri,  # users and permissions live beside the runs
        "admin_username": settings.admin_username or "",
        "admin_password": settings.admin_password or "",
        # MLflow's basic auth, and only an admin creates registered models (teamserver/authz.py)
        "authorization_function": "flowops.teamserver.authz:authenticate",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "auth.ini"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        config.write(fh)
    return path


PRIVATE_PREFIX = "flowops-server-"


def remove_stale_configs(config_dir: Path) -> list[Path]:
    """Remove the private config folders of servers started from `config_dir` that have exited
    (their auth.ini holds the admin and database passwords); the removed folders. A folder whose
    server still runs, or that names no server, is left alone."""
    removed = []
    for folder in sorted(config_dir.glob(f"{PRIVATE_PREFIX}*")):
        try:
            if folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / "pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if pid > 0 and not running(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def command(settings: ServerSettings) -> list[str]:
    """The `mlflow server` command line for these settings: nothing secret in it (`ps` shows it to
    every local user). The store and artifact URIs, which may hold passwords, go in the
    environment (`environment`), which only the owner can read."""
    cmd = [
        "mlflow",
        "server",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
    ]
    cmd.append("--serve-artifacts" if settings.artifacts_destination else "--no-serve-artifacts")
    if settings.auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def environment(settings: ServerSettings, config_dir: Path) -> dict[str, str]:
    """The server's environment: its store URIs (read by `mlflow server`'s options) and, with
    --auth, the basic-auth config written into a fresh private folder under `config_dir`."""
    env = dict(os.environ)
    env["MLFLOW_BACKEND_STORE_URI"] = settings.backend_store_uri
    for key in ("MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        env.pop(key, None)
    if settings.artifacts_destination:
        env["MLFLOW_ARTIFACTS_DESTINATION"] = settings.artifacts_destination
    else:
        env["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = settings.default_artifact_root or ""
    # MLflow's server-side job runner (GenAI jobs) starts seven worker processes per server;
    # flowops uses none of them. An operator can still turn it on explicitly.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if settings.auth:
        config_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_configs(config_dir)
        private = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=config_dir))  # mode 0700, unguessable
        # This process becomes `mlflow server` (execve keeps the pid): the next start removes the
        # folder, which holds the admin password, once that process is gone.
        (private / "pid").write_text(f"{os.getpid()}\n")
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(settings, private))
        # Every worker must sign sessions with the same key: generate one per start if none is set.
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", uuid.uuid4().hex + uuid.uuid4().hex)
    return env
