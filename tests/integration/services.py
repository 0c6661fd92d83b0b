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
from filelock import FileLock

from flowops.health import wait_healthy

from ..parallel import free_port, shared_root

BIN = Path(sys.executable).parent
SFTP_USER = "flowopssftp"
PG = "postgresql://postgres@127.0.0.1:5432"


def ensure_postgres() -> None:
    if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True)
        for _ in range(30):
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
                return
            time.sleep(0.5)
        pytest.fail("PostgreSQL did not start on 127.0.0.1:5432")


@pytest.fixture(scope="session")
def postgres_template():
    """A database with MLflow's schema, migrated once per worker: each test's database is a
    copy (CREATE DATABASE ... TEMPLATE), so no server or client waits on MLflow's migrations."""
    import psycopg

    ensure_postgres()
    name = f"flowops_template_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # In a child process: a template may have no open connection when it is copied, and
    # SQLAlchemy's pool would keep one in this process.
    migrate = "from mlflow.tracking import MlflowClient; import sys; MlflowClient(sys.argv[1]).search_experiments()"
    done = subprocess.run([sys.executable, "-c", migrate, f"{PG}/{name}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    yield name
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_db(postgres_template):
    """A fresh database with MLflow's schema, dropped afterwards: yields its postgresql:// URI."""
    import psycopg

    name = f"flowops_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
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
        """End this sshd and every connection it serves (other workers' sshd keep theirs)."""
        if not self.pidfile.exists():
            return
        listener = int(self.pidfile.read_text())
        # sshd forks a process per connection, which starts a session of its own: follow the
        # parent links, not the process group, so only this server's connections end.
        doomed = [listener, *descendants(listener)]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL if pid != listener else signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.pidfile.unlink(missing_ok=True)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in doomed):
            if time.monotonic() > deadline:
                pytest.fail(f"sshd {listener} and its connections did not stop in 10 s")
            time.sleep(0.05)

    def files(self) -> list[str]:
        upload = self.root / "upload"
        return sorted(str(p.relative_to(upload)) for p in upload.rglob("*") if p.is_file())


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the parent tree (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


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
    # Every xdist worker runs an sshd of its own for the same system user. useradd and usermod
    # fail at once ("cannot lock /etc/passwd") while another one runs: one worker at a time.
    with FileLock(str(shared_root(tmp_path_factory) / "sftp-user.lock")):
        added = subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", SFTP_USER], capture_output=True, text=True
        )
        assert added.returncode in (0, 9), added.stderr  # 9: it exists already
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
    """Factory: mlflow_server(backend_uri, mode='proxied'|'direct', auth=False, workers=1, **env) -> a started server.
    One web worker unless the test is about several (auth's shared secret, load, a crash of all of them):
    each one more imports MLflow's server again, seconds of CPU on a 2-core machine."""
    started: list[MlflowServer] = []

    def start(backend: str, mode: str = "proxied", auth: bool = False, workers: int = 1, **extra_env) -> MlflowServer:
        flag = "--artifacts-destination" if mode == "proxied" else "--default-artifact-root"
        args = [
            "--backend-store-uri",
            backend,
            flag,
            sftp.uri,
            "--workers",
            str(workers),
            "--config-dir",
            str(tmp_path),
        ]
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


@pytest.fixture
def server(tmp_path):
    """A real tracking server on loopback (SQLite behind it): faults go in front (the fault proxy)."""
    proc, url = plain_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


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
