"""The team tracking server for real: PostgreSQL backend, SFTP artifacts, basic auth, faults, load."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from .conftest import BIN, tiny_spec
from .services import mlflow_server, postgres_db, sftp  # noqa: F401 - fixtures
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
    (repo.path / "experiments").mkdir(exist_ok=True)
    (repo.path / "experiments" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return repo, spec


def test_server_checks_say_what_is_wrong(sftp, postgres_db):
    env = {**os.environ, "HOME": str(sftp.home)}
    ok = run("server", "--backend-store-uri", postgres_db, "--artifacts-destination", sftp.uri, "--check-only", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"ok   backend store {postgres_db}: PostgreSQL " + ok.stdout.split("PostgreSQL ")[1].splitlines()[0],
                                      f"ok   artifact store {sftp.uri}: write, list and delete work"]  # fmt: skip
    bad_db = run("server", "--backend-store-uri", postgres_db + "_missing", "--artifacts-destination", sftp.uri, "--check-only", env=env)
    assert bad_db.returncode == 1
    assert bad_db.stderr.strip().endswith(f'database "{postgres_db.rsplit("/", 1)[1]}_missing" does not exist')
    no_key = run("server", "--backend-store-uri", postgres_db, "--artifacts-destination", sftp.uri, "--check-only", env={**os.environ, "HOME": "/nonexistent"})
    assert no_key.returncode == 1
    assert no_key.stderr.startswith(f"artifact store {sftp.uri}: SSHException: No hostkey for host 127.0.0.1 found.")
    assert len(no_key.stderr.strip().splitlines()) == 1  # no pysftp warnings or tracebacks
    neither = run("server", "--backend-store-uri", postgres_db, env=env)
    assert (neither.returncode, neither.stderr) == (1, "give exactly one of --artifacts-destination (proxied) or --default-artifact-root (direct)\n")


def test_proxied_mode_training_promote_report(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "proxied")
    env = client_env(server.uri, FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))  # runners need no SFTP credentials
    doctor = run("doctor", env=env, cwd=tmp_path)  # no policy here: a scratch model is probed
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert [line.split(":")[0] for line in doctor.stdout.splitlines()] == ["ok   server", "ok   credentials", "ok   artifacts", "ok   registry"]
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
    promoted = run("promote", "--git-range", rng, env=env, cwd=repo.path)
    assert promoted.returncode == 0, promoted.stderr
    assert "production: moved unset -> v1 (experiments/srv.yaml)" in promoted.stdout
    report = run("report", "--run", finished.info.run_id, "--out", str(tmp_path / "report"), env=env, cwd=repo.path)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"`{server.uri}/#/experiments/" in text and "production v1" in text


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


def test_auth_rejects_anonymous_and_read_only_users_cannot_move_aliases(tmp_path, synth_root, sftp, postgres_db, mlflow_server):
    server = mlflow_server(postgres_db, "proxied", auth=True, **ADMIN)
    assert requests.get(f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401
    admin = (ADMIN["FLOWOPS_ADMIN_USERNAME"], ADMIN["FLOWOPS_ADMIN_PASSWORD"])
    created = requests.post(f"{server.uri}/api/2.0/mlflow/users/create", json={"username": "reader", "password": "reader-pw-1234"}, auth=admin, timeout=10)
    assert created.status_code == 200, created.text
    admin_env = client_env(server.uri, MLFLOW_TRACKING_USERNAME=admin[0], MLFLOW_TRACKING_PASSWORD=admin[1],
                           FLOWOPS_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))  # fmt: skip
    reader_env = {**admin_env, "MLFLOW_TRACKING_USERNAME": "reader", "MLFLOW_TRACKING_PASSWORD": "reader-pw-1234"}
    anonymous = {k: v for k, v in admin_env.items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    outputs = []
    # the admin trains and promotes
    repo, spec = team_repo(tmp_path, synth_root, name="authz")
    for args in (("train", "experiments/authz.yaml"), ("promote", "--git-range", repo.merge("merge", {"authz.yaml": spec}))):
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
    assert denied.stderr.startswith("tracking server refused: PERMISSION_DENIED"), denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1
    doctor = run("doctor", "--expect", "read-only", env=reader_env, cwd=repo.path)  # the model from the repo's policy
    outputs.append(doctor.stdout + doctor.stderr)
    assert doctor.returncode == 0 and "ok   registry: model 'team-model' is read-only, as expected" in doctor.stdout, outputs[-1]
    admin_doctor = run("doctor", "--model", "team-model", env=admin_env)
    outputs.append(admin_doctor.stdout + admin_doctor.stderr)
    assert "ok   registry: model 'team-model' is writable" in admin_doctor.stdout, outputs[-1]
    nobody = run("doctor", env=anonymous)
    outputs.append(nobody.stdout + nobody.stderr)
    assert nobody.returncode == 1 and "FAIL credentials: required: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in nobody.stdout
    # no password ever reaches the output
    for text in outputs:
        assert ADMIN["FLOWOPS_ADMIN_PASSWORD"] not in text and "reader-pw-1234" not in text
