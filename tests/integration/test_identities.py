"""The two identities on a real basic-auth server: the trainer logs runs, only the promoter moves aliases."""

from __future__ import annotations

import requests
from mlflow.tracking import MlflowClient

from .test_promote import TeamRepo, fake_run, spec
from .test_server import ADMIN, POLICY, client_env, run

USERS = {"trainer": "trainer-pw-1234", "promoter": "promoter-pw-1234"}


def as_user(uri: str, tmp_path, user: str) -> dict:
    password = ADMIN["FLOWOPS_ADMIN_PASSWORD"] if user == "admin" else USERS[user]
    return client_env(uri, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password, HOME=str(tmp_path))


def test_trainer_cannot_promote_and_promoter_can(tmp_path, postgres_db, mlflow_server, monkeypatch):
    server = mlflow_server(postgres_db, "proxied", auth=True, workers=2, **ADMIN)
    admin = (ADMIN["FLOWOPS_ADMIN_USERNAME"], ADMIN["FLOWOPS_ADMIN_PASSWORD"])
    for user, password in USERS.items():
        created = requests.post(f"{server.uri}/api/2.0/mlflow/users/create", json={"username": user, "password": password},
                                auth=admin, timeout=10)  # fmt: skip
        assert created.status_code == 200, created.text
    repo = TeamRepo(tmp_path / "team", POLICY)
    # The trainer logs a run, as the CI training job does.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", USERS["trainer"])
    import mlflow

    mlflow.set_tracking_uri(server.uri)
    run_id = fake_run(repo, spec("a"), 0.5)
    merged = repo.merge("merge", {"a.yaml": spec("a")})
    admin_client = MlflowClient(server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin[1])

    # On an empty server, the trainer's promote creates nothing (it would own the model).
    empty = run("promote", "--git-range", merged, env=as_user(server.uri, tmp_path, "trainer"), cwd=repo.path)
    assert empty.returncode == 1
    assert empty.stderr.startswith("model 'team-model' is not registered on "), empty.stderr
    assert admin_client.search_registered_models() == []

    # #32.2: nor when told to create it: whoever creates a model owns it (and could move production).
    created = run("promote", "--git-range", merged, "--create-model", env=as_user(server.uri, tmp_path, "trainer"),
                  cwd=repo.path)  # fmt: skip
    assert created.returncode == 1 and created.stderr.startswith(
        "--create-model: on a tracking server with users only the admin creates the model (flowops server-init), "
        "not 'trainer'"
    ), created.stderr
    assert admin_client.search_registered_models() == []
    # #32.2: nor through MLflow's own API, which lets any user create (and so own) a model.
    for user in USERS:
        direct = requests.post(f"{server.uri}/api/2.0/mlflow/registered-models/create", json={"name": "team-model"},
                               auth=(user, USERS[user]), timeout=10)  # fmt: skip
        assert direct.status_code == 403, direct.text
        assert direct.json() == {
            "error_code": "PERMISSION_DENIED",
            "message": "only an admin creates registered models on this server (flowops server-init); "
            "whoever creates one owns it",
        }
    assert admin_client.search_registered_models() == []
    unknown = requests.post(f"{server.uri}/api/2.0/mlflow/registered-models/create", json={"name": "team-model"},
                            auth=("trainer", "wrong"), timeout=10)  # fmt: skip
    assert unknown.status_code == 401  # MLflow's own answer to a bad password, unchanged

    # The admin sets the registry up once; then the trainer still cannot move anything.
    init = run("server-init", "--model", "team-model", "--promoter", "promoter", "--trainer", "trainer",
               env=as_user(server.uri, tmp_path, "admin"))  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert init.stdout.splitlines() == [
        "created registered model 'team-model'",
        "granted 'promoter' MANAGE on 'team-model' (it had READ)",  # the server's default
        "'trainer' has READ on 'team-model'",
    ]
    # #32.2: set-up is rerunnable and ends in exactly the documented permissions.
    again = run("server-init", "--model", "team-model", "--promoter", "promoter", "--trainer", "trainer",
                env=as_user(server.uri, tmp_path, "admin"))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "registered model 'team-model' exists",
        "'promoter' has MANAGE on 'team-model'",
        "'trainer' has READ on 'team-model'",
    ]
    # MANAGE on the team's model is not a right to create others.
    other = requests.post(f"{server.uri}/ajax-api/2.0/mlflow/registered-models/create", json={"name": "other"},
                          auth=("promoter", USERS["promoter"]), timeout=10)  # fmt: skip
    assert other.status_code == 403, other.text
    assert [m.name for m in admin_client.search_registered_models()] == ["team-model"]
    denied = run("promote", "--git-range", merged, env=as_user(server.uri, tmp_path, "trainer"), cwd=repo.path)
    assert denied.returncode == 1
    assert denied.stderr.startswith(f"tracking server {server.uri} refused set_registered_model_tag: PERMISSION_DENIED")
    assert len(denied.stderr.strip().splitlines()) == 1
    assert admin_client.search_model_versions("name = 'team-model'") == []

    # The promoter, with MANAGE on the model only, promotes; the audit names who did it.
    done = run("promote", "--git-range", merged, env={**as_user(server.uri, tmp_path, "promoter"), "GITHUB_ACTOR": "octocat"},
               cwd=repo.path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert admin_client.get_model_version_by_alias("team-model", "production").run_id == run_id
    history = run("history", env=as_user(server.uri, tmp_path, "trainer"), cwd=repo.path)
    assert "by promoter (GitHub octocat)" in history.stdout, history.stdout + history.stderr
