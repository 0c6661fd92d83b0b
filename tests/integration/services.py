"""Real services on 127.0.0.1 for the team-server tests: PostgreSQL, OpenSSH (SFTP), mlflow server.

Nothing here is faked. PostgreSQL runs on the machine (trust auth); each test gets its own
database. sshd runs as root on a free port with a temporary host key, a chrooted SFTP user
and a client key, configured the way pysftp (inside MLflow) needs it; see DESIGN.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from flowops.health import wait_healthy

BIN = Path(sys.executable).parent
SFTP_USER = "flowopssftp"
PG = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_postgres() -> None:
    if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True)
        for _ in range(30):
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
                return
            time.sleep(0.5)
        pytest.fail("PostgreSQL did not start on 127.0.0.1:5432")


@pytest.fixture
def postgres_db():
    """A fresh database, dropped afterwards: yields its postgresql:// URI."""
    import psycopg

    ensure_postgres()
    name = f"flowops_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG}/{name}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Sftp:
    port: int
    root: Path  # the chroot; artifacts land in root/upload
    home: Path  # a HOME whose ~/.ssh holds the client key, config and known_hosts
    config: Path
    pidfile: Path
    log: Path

    @property
    def uri(self) -> str:
        return f"sftp://{SFTP_USER}@127.0.0.1:{self.port}/upload"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        subprocess.run(["/usr/sbin/sshd", "-f", str(self.config), "-E", str(self.log)], check=True)
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        pytest.fail(f"sshd did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.pidfile.exists():
            try:
                os.kill(int(self.pidfile.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.pidfile.unlink(missing_ok=True)
        # sshd forks a process per connection: end the children of this config too
        subprocess.run(["pkill", "-f", f"sshd: {SFTP_USER}"], capture_output=True)
        time.sleep(0.3)

    def files(self) -> list[str]:
        upload = self.root / "upload"
        return sorted(str(p.relative_to(upload)) for p in upload.rglob("*") if p.is_file())


def _keygen(path: Path) -> str:
    # pysftp loads only RSA/DSS private keys, and only in PEM form.
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="session")
def sftp(tmp_path_factory):
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("openssh-server is not installed (.ci/run installs it)")
    base = tmp_path_factory.mktemp("sftp")
    base.chmod(0o755)
    if subprocess.run(["id", SFTP_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", SFTP_USER], check=True)
    subprocess.run(["usermod", "-p", "*", SFTP_USER], check=True)  # locked accounts may not log in with keys
    # The chroot and every folder above it must be root-owned and not group/world-writable,
    # which rules out anything under /tmp (mode 1777): use /srv, and remove it afterwards.
    top = Path("/srv") / f"flowops-sftp-{uuid.uuid4().hex[:8]}"
    root = top / "chroot"
    (root / "upload").mkdir(parents=True)
    for folder in (top, root):
        folder.chmod(0o755)
    shutil.chown(root / "upload", SFTP_USER, SFTP_USER)
    host_key = base / "host_rsa"
    host_pub = _keygen(host_key)
    home = base / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True)
    client_pub = _keygen(ssh / "id_rsa")
    keys = top / "authorized_keys"  # sshd reads it as the SFTP user: not under the 0700 pytest folder
    keys.mkdir(mode=0o755)
    (keys / SFTP_USER).write_text(client_pub + "\n")
    (keys / SFTP_USER).chmod(0o644)
    port = free_port()
    key_type, key_data = host_pub.split()[:2]
    # pysftp looks the host up without the port; OpenSSH with it: write both.
    (ssh / "known_hosts").write_text(f"127.0.0.1 {key_type} {key_data}\n[127.0.0.1]:{port} {key_type} {key_data}\n")
    (ssh / "config").write_text(f"Host 127.0.0.1\n  User {SFTP_USER}\n  Port {port}\n  IdentityFile {ssh / 'id_rsa'}\n")
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {base / 'sshd.pid'}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                f"AuthorizedKeysFile {keys}/%u",
                "Subsystem sftp internal-sftp",
                f"Match User {SFTP_USER}",
                f"  ChrootDirectory {root}",
                "  ForceCommand internal-sftp",
                "  AllowTcpForwarding no",
            ]
        )
        + "\n"
    )
    server = Sftp(port, root, home, config, base / "sshd.pid", base / "sshd.log")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(top, ignore_errors=True)


@dataclass
class MlflowServer:
    """`flowops server` running as a subprocess; stop() and start() again on the same port."""

    args: list[str]
    env: dict
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "flowops"), "server", *self.args, "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait_healthy(self.uri, timeout, self.proc):
            return
        if self.proc.poll() is not None:
            pytest.fail(f"flowops server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        pytest.fail(f"mlflow server did not answer in {timeout} s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server (gunicorn/uvicorn and its workers), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path, sftp):
    """Factory: mlflow_server(backend_uri, mode='proxied'|'direct', auth=False, **env) -> a started server."""
    started: list[MlflowServer] = []

    def start(backend: str, mode: str = "proxied", auth: bool = False, **extra_env) -> MlflowServer:
        flag = "--artifacts-destination" if mode == "proxied" else "--default-artifact-root"
        args = ["--backend-store-uri", backend, flag, sftp.uri, "--workers", "2", "--config-dir", str(tmp_path)]
        if auth:
            args.append("--auth")
        env = {**os.environ, "HOME": str(sftp.home), **extra_env}
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.pop(key, None)
        server = MlflowServer(args, env, free_port(), tmp_path / f"server-{len(started)}.log")
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def plain_mlflow_server(backend_uri: str, artifacts: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A bare `mlflow server` (no SFTP, no auth) on a free loopback port, answering: (process, URL).
    It leads its own process group: os.killpg(process.pid, ...) stops it and its workers."""
    port = free_port()
    extra = ["--artifacts-destination", str(artifacts)] if artifacts else []
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_uri,
            *extra,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url, 120, proc):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"mlflow server on {url} did not answer")
    return proc, url


class Service:
    """`flowops serve` in its own process, following `model`@`alias`."""

    def __init__(self, uri: str, *extra: str, model: str, alias: str = "production"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        self.proc = subprocess.Popen(
            [
                str(BIN / "flowops"),
                "serve",
                "--model",
                model,
                "--alias",
                alias,
                "--port",
                str(self.port),
                "--poll",
                "0.5",
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 180) -> dict:
        deadline = time.time() + timeout
        seen_loading = False
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1][-3000:]
            try:
                r = requests.get(f"{self.url}/health", timeout=2)
                if r.status_code == 200:
                    return {**r.json(), "seen_loading": seen_loading}
                seen_loading |= r.status_code == 503 and r.json()["status"] == "loading"
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail("service never became ready")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
