"""The team tracking server for real: PostgreSQL backend, SFTP artifacts, basic auth, faults, load."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from flowops.health import wait_healthy

from .conftest import BIN, tiny_spec, write_experiment
from .services import descendants, free_port
from .test_promote import TeamRepo

POLICY = {"model_name": "team-model", "targets": {"production": {"thresholds": [{"metric": "val_iou", "min": 0.0}]}}}
ADMIN = {"FLOWOPS_ADMIN_USERNAME": "admin", "FLOWOPS_ADMIN_PASSWORD": "s3cret-admin-pw"}


def client_env(uri: str, **extra) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}", **extra}
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(key, None)
    return env


def run(*args: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flowops"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def team_repo(tmp_path, synth_root, name="srv") -> tuple[TeamRepo, dict]:
    repo = TeamRepo(tmp_path / "team", POLICY)
    spec = tiny_spec(synth_root, name=name, experiment_name="team")
    write_experiment(repo.path, spec, f"{name}.yaml")
    return repo, spec


def test_server_checks_say_what_is_wrong(sftp, postgres_db):
    env = {**os.environ, "HOME": str(sftp.home)}
    ok = run("server", "--backend-store-uri", postgres_db, "--artifacts-destination", sftp.uri, "--check-only", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        f"ok   backend store {postgres_db}: PostgreSQL " + ok.stdout.split("PostgreSQL ")[1].splitlines()[0],
        f"ok   artifact store {sftp.uri}: write, list and delete work",
    ]
    bad_db = run(
        "server",
        "--backend-store-uri",
        postgres_db + "_missing",
        "--artifacts-destination",
        sftp.uri,
        "--check-only",
        env=env,
    )
    assert bad_db.returncode == 1
    assert bad_db.stderr.strip().endswith(f'database "{postgres_db.rsplit("/", 1)[1]}_missing" does not exist')
    no_key = run(
        "server",
        "--backend-store-uri",
        postgres_db,
        "--artifacts-destination",
        sftp.uri,
        "--check-only",
        env={**os.environ, "HOME": "/nonexistent"},
    )
    assert no_key.returncode == 1
    assert no_key.stderr.startswith(f"artifact store {sftp.uri}: SSHException: No hostkey for host 127.0.0.1 found.")
    assert len(no_key.stderr.strip().splitlines()) == 1  # no pysftp warnings or tracebacks
    neither = run("server", "--backend-store-uri", postgres_db, env=env)
    assert (neither.returncode, neither.stderr) == (
        1,
        "give exactly one of --artifacts-destination (proxied) or --default-artifact-root (direct)\n",
    )


def test_proxied_mode_training_promote_report(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "proxied")
    env = client_env(
        server.uri, FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path)
    )  # runners need no SFTP credentials
    doctor = run("doctor", env=env, cwd=tmp_path)  # no policy here: a scratch model is probed
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert [line.split(":")[0] for line in doctor.stdout.splitlines()] == [
        "ok   server",
        "ok   credentials",
        "ok   artifacts",
        "ok   registry",
    ]
    assert doctor.stdout.splitlines()[-1] == "ok   registry: a new model is writable"
    repo, spec = team_repo(tmp_path, synth_root)
    trained = run("train", "experiments/srv.yaml", env=env, cwd=repo.path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = MlflowClient(server.uri)
    (finished,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert finished.info.status == "FINISHED"
    # the artifacts are on the SFTP server, under the run
    files = sftp.files()
    assert any(f.endswith(f"{finished.info.run_id}/artifacts/plots/learning_curves.png") for f in files), files[:20]
    assert any(f.endswith("/artifacts/MLmodel") for f in files)
    rng = repo.merge("merge", {"srv.yaml": spec})
    promoted = run("promote", "--git-range", rng, "--create-model", env=env, cwd=repo.path)
    assert promoted.returncode == 0, promoted.stderr
    assert "production: moved unset -> v1 (experiments/srv.yaml)" in promoted.stdout
    report = run("report", "--run", finished.info.run_id, "--out", str(tmp_path / "report"), env=env, cwd=repo.path)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "production v1" in text
    assert server.uri not in text and "127.0.0.1" not in text  # published: no internal address
    assert f"`run {finished.info.run_id} on the team's tracking server (set FLOWOPS_PUBLIC_UI_URL" in text
    public = {**env, "FLOWOPS_PUBLIC_UI_URL": "https://mlflow.example.org/"}
    report = run("report", "--run", finished.info.run_id, "--out", str(tmp_path / "r2"), env=public, cwd=repo.path)
    assert report.returncode == 0, report.stderr
    assert "`https://mlflow.example.org/#/experiments/" in (tmp_path / "r2" / "report.md").read_text()


def test_direct_mode_clients_write_to_sftp(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "direct")
    # Direct mode: the client itself writes over SFTP, with the key in its ~/.ssh.
    env = client_env(server.uri, FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(sftp.home))
    repo, _ = team_repo(tmp_path, synth_root, name="direct")
    trained = run("train", "experiments/direct.yaml", env=env, cwd=repo.path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    client = MlflowClient(server.uri)
    (finished,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert finished.info.artifact_uri.startswith(sftp.uri)
    assert any(f.endswith(f"{finished.info.run_id}/artifacts/plots/sample_predictions.png") for f in sftp.files())


def test_auth_rejects_anonymous_and_read_only_users_cannot_move_aliases(
    tmp_path, synth_root, sftp, postgres_db, mlflow_server
):
    server = mlflow_server(postgres_db, "proxied", auth=True, workers=2, **ADMIN)
    assert requests.get(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401
    admin = (ADMIN["FLOWOPS_ADMIN_USERNAME"], ADMIN["FLOWOPS_ADMIN_PASSWORD"])
    created = requests.post(
        f"{server.uri}/api/2.0/mlflow/users/create",
        json={"username": "reader", "password": "reader-pw-1234"},
        auth=admin,
        timeout=10,
    )
    assert created.status_code == 200, created.text
    admin_env = client_env(
        server.uri,
        MLFLOW_TRACKING_USERNAME=admin[0],
        MLFLOW_TRACKING_PASSWORD=admin[1],
        FLOWOPS_CACHE_DIR=str(tmp_path / "cache"),
        HOME=str(tmp_path),
    )
    reader_env = {**admin_env, "MLFLOW_TRACKING_USERNAME": "reader", "MLFLOW_TRACKING_PASSWORD": "reader-pw-1234"}
    anonymous = {
        k: v for k, v in admin_env.items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    }
    outputs = []
    # the admin trains and promotes
    repo, spec = team_repo(tmp_path, synth_root, name="authz")
    for args in (
        ("train", "experiments/authz.yaml"),
        ("promote", "--git-range", repo.merge("merge", {"authz.yaml": spec}), "--create-model"),
    ):
        proc = run(*args, env=admin_env, cwd=repo.path)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, outputs[-1][-3000:]
    # the reader can read but not move an alias
    status = run("status", env=reader_env, cwd=repo.path)
    outputs.append(status.stdout + status.stderr)
    assert status.returncode == 0 and status.stdout.startswith("production: v1"), outputs[-1]
    denied = run("rollback", "--alias", "production", "--to", "1", env=reader_env, cwd=repo.path)
    outputs.append(denied.stdout + denied.stderr)
    assert denied.returncode == 1
    assert denied.stderr.startswith(f"tracking server {server.uri} refused set_registered_model_tag: PERMISSION_DENIED")
    assert len(denied.stderr.strip().splitlines()) == 1
    doctor = run("doctor", "--expect", "read-only", env=reader_env, cwd=repo.path)  # the model from the repo's policy
    outputs.append(doctor.stdout + doctor.stderr)
    assert doctor.returncode == 0 and "ok   registry: model 'team-model' is read-only, as expected" in doctor.stdout, (
        outputs[-1]
    )
    admin_doctor = run("doctor", "--model", "team-model", env=admin_env)
    outputs.append(admin_doctor.stdout + admin_doctor.stderr)
    assert "ok   registry: model 'team-model' is writable" in admin_doctor.stdout, outputs[-1]
    nobody = run("doctor", env=anonymous)
    outputs.append(nobody.stdout + nobody.stderr)
    assert (
        nobody.returncode == 1
        and "FAIL credentials: required: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in nobody.stdout
    )
    # no password ever reaches the output
    for text in outputs:
        assert ADMIN["FLOWOPS_ADMIN_PASSWORD"] not in text and "reader-pw-1234" not in text


def wait_for_metric(client, experiment: str, key: str, step: int, proc, timeout: float = 240):
    """The run of `experiment` once `key` has reached `step` (training is under way)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name(experiment)
        for r in client.search_runs([exp.experiment_id]) if exp else []:
            history = client.get_metric_history(r.info.run_id, key)
            if history and max(m.step for m in history) >= step:
                return r
        time.sleep(0.5)
    pytest.fail(
        f"training did not reach {key} step {step}: "
        f"{proc.communicate()[1][-2000:] if proc.poll() is not None else 'timeout'}"
    )


def start_training(repo: TeamRepo, spec: dict, env: dict) -> subprocess.Popen:
    """Write experiments/<name>.yaml into the repository and start `flowops train` on it."""
    path = write_experiment(repo.path, spec, f"{spec['name']}.yaml")
    return subprocess.Popen(
        [str(BIN / "flowops"), "train", str(path.relative_to(repo.path))],
        cwd=repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_training_survives_a_server_restart(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "proxied", workers=2)  # every process of it dies
    repo = TeamRepo(tmp_path / "team", POLICY)
    spec = tiny_spec(synth_root, name="restart", experiment_name="team", epochs=8, max_batches_per_epoch=2)
    proc = start_training(
        repo, spec, client_env(server.uri, FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))
    )
    client = MlflowClient(server.uri)
    run_under_way = wait_for_metric(client, "team", "loss", 2, proc)
    server.kill()  # a crash mid-training (kill() returns once every process of it has exited)
    time.sleep(3)  # the outage lasts 3 s: the fault's length, not a wait for a state
    server.start()  # back within seconds, same port and database
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    final = MlflowClient(server.uri).get_run(run_under_way.info.run_id)
    assert final.info.status == "FINISHED"
    for key in ("loss", "val_loss", "val_iou"):
        assert [m.step for m in MlflowClient(server.uri).get_metric_history(final.info.run_id, key)] == list(
            range(1, 9)
        ), key


def test_promote_with_the_server_down_fails_clearly_then_succeeds(tmp_path, sftp, postgres_db, mlflow_server):
    import mlflow

    from .test_promote import fake_run, spec

    server = mlflow_server(postgres_db, "proxied")
    repo = TeamRepo(tmp_path / "team", POLICY)
    mlflow.set_tracking_uri(server.uri)
    try:
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
        fake_run(repo, spec("a"), 0.5)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    rng = repo.merge("merge", {"a.yaml": spec("a")})
    server.kill()
    env = client_env(
        server.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0", HOME=str(tmp_path)
    )
    down = run("promote", "--git-range", rng, "--create-model", env=env, cwd=repo.path)
    assert down.returncode == 1
    *retrying, last = down.stderr.strip().splitlines()
    assert last.startswith(f"tracking server {server.uri} cannot be reached: "), down.stderr
    assert retrying == [f"flowops: {server.uri}: no connection; retrying (0 tries left)"], down.stderr
    server.start()
    client = MlflowClient(server.uri)
    assert client.search_registered_models() == []  # nothing half-done
    again = run("promote", "--git-range", rng, "--create-model", env=env, cwd=repo.path)
    assert again.returncode == 0, again.stderr
    assert str(client.get_model_version_by_alias("team-model", "production").version) == "1"


def test_sftp_down_while_logging_artifacts_fails_the_run(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "proxied")
    repo = TeamRepo(tmp_path / "team", POLICY)
    spec = tiny_spec(synth_root, name="nosftp", experiment_name="team", epochs=3, max_batches_per_epoch=2)
    env = client_env(
        server.uri, FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path), MLFLOW_HTTP_REQUEST_MAX_RETRIES="1"
    )
    proc = start_training(repo, spec, env)
    client = MlflowClient(server.uri)
    try:
        under_way = wait_for_metric(client, "team", "loss", 1, proc)
        sftp.stop()  # the artifact store goes away before the evaluation, the plots and the model are logged
        _, err = proc.communicate(timeout=600)
    finally:
        sftp.start()
    assert proc.returncode == 1
    final = client.get_run(under_way.info.run_id)
    assert final.info.status == "FAILED"
    reason = final.data.tags["flowops.failure"]
    assert (
        reason
        == "could not store artifact evaluation/confusion.npz on the tracking server (its artifact store failed or is down)"
    )
    assert err.strip().splitlines()[-1].startswith("training nosftp failed (run ")


def test_concurrent_writers_lose_no_metric(postgres_db, mlflow_server, sftp, monkeypatch):
    """8 writer processes on loopback, bounded: 160 requests of 50 points; every point must arrive."""
    from ..conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # spawned writers import it by name
    import server_load as bench

    server = mlflow_server(postgres_db, "proxied", workers=2)
    stats = bench.load(server.uri, writers=8, batches=20, per_batch=50)
    assert (stats["points"], stats["missing"], stats["requests"]) == (8000, 0, 160)
    assert stats["seconds"] < 300


def test_no_secret_in_any_process_arguments_and_the_auth_config_is_private(postgres_db, tmp_path):
    """`ps` shows every process's arguments to every local user: the database password and the
    admin password must be in neither, and the auth config not at a guessable shared path."""
    import stat

    secret = "Sup3rSecretDbPw"  # loopback trusts any password: the server starts with it all the same
    uri = postgres_db.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    port = free_port()
    env = {
        **os.environ,
        "FLOWOPS_BACKEND_STORE_URI": uri,
        "FLOWOPS_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
        "FLOWOPS_ADMIN_USERNAME": "admin",
        "FLOWOPS_ADMIN_PASSWORD": "AdminPw-9f3k2",
    }
    proc = subprocess.Popen(
        [
            str(BIN / "flowops"),
            "server",
            "--auth",
            "--port",
            str(port),
            "--workers",
            "2",
            "--config-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}", 120, proc)
        tree = {*descendants(proc.pid), proc.pid}
        assert len(tree) >= 3  # mlflow server and its workers
        for pid in tree:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            assert secret not in argv and "AdminPw-9f3k2" not in argv, argv
        (ini,) = tmp_path.glob("flowops-server-*/auth.ini")
        assert stat.S_IMODE(ini.stat().st_mode) == 0o600 and stat.S_IMODE(ini.parent.stat().st_mode) == 0o700
        assert not list(Path(tempfile.gettempdir()).glob(f"flowops-auth-{port}.ini"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
