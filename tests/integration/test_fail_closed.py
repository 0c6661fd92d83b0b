"""Promotion fails closed: a failed read is never "nothing there", a copied tag is not a run.

A real `mlflow server` (PostgreSQL, SFTP artifacts) sits behind a fault-injecting proxy
(`faultproxy.py`): the calls the proxy does not fail reach the real server.
"""

from __future__ import annotations

import os
import subprocess
import time

import mlflow
import pytest
from mlflow.entities import LoggedModelOutput
from mlflow.tracking import MlflowClient

from ..parallel import free_port
from .conftest import BIN
from .faultproxy import FaultProxy
from .test_promote import POLICY, TeamRepo, audit, fake_run, holder, promote, spec

ALIAS_READ = "/registered-models/alias"  # GET: get_model_version_by_alias
MODEL_READ = "/registered-models/get"  # GET: get_registered_model


def flowops_env(uri: str, **extra: str) -> dict:
    """This process's environment for a flowops command: flowops' own HTTP bounds (an in-process
    command may have set MLFLOW_HTTP_* here), then `extra` (it used to be dropped with them)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for key in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", *[k for k in env if k.startswith("MLFLOW_HTTP")]):
        env.pop(key, None)
    return {**env, **extra}


def flowops_at(repo: TeamRepo, env: dict, *args: str) -> tuple[int, str, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "flowops"), *args], cwd=repo.path, env=env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


@pytest.fixture
def repo(tmp_path, store) -> TeamRepo:
    return TeamRepo(tmp_path / "team", POLICY)


def retry_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("flowops: ") and "retrying" in line]


@pytest.fixture
def served(tmp_path, postgres_db, mlflow_server, monkeypatch):
    """A team repo whose first merge holds both aliases on a real server (v1), and a better run merged next."""
    server = mlflow_server(postgres_db, "proxied")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    mlflow.set_tracking_uri(server.uri)
    repo = TeamRepo(tmp_path / "team", POLICY)
    fake_run(repo, spec("a"), 0.5)
    code, out, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}), "--create-model")
    assert code == 0, out + err
    fake_run(repo, spec("b"), 0.9)
    second = repo.merge("merge", {"b.yaml": spec("b")})
    return server, repo, second


def test_a_failed_registry_read_moves_nothing(served, tmp_path):
    server, repo, second = served
    client = MlflowClient(server.uri)
    versions = len(client.search_model_versions("name = 'team-model'"))
    records = audit()
    report = ["report", "--run", holder("production").run_id, "--out", str(tmp_path / "r")]
    commands = [
        (ALIAS_READ, ["promote", "--git-range", second]),
        (ALIAS_READ, report),
        (ALIAS_READ, ["status", "--repo", str(repo.path)]),
        (MODEL_READ, ["history"]),
        (ALIAS_READ, ["rollback", "--alias", "production", "--to", "1"]),
    ]
    expected = {"500": "HTTP 500", "403": "PERMISSION_DENIED", "hang": "cannot be reached"}
    with FaultProxy(server.uri, hang_s=20) as proxy:
        for fault, said in expected.items():
            # retries are tested with a dead server below; here one try, and a short one for the hang
            env = flowops_env(proxy.uri, MLFLOW_HTTP_REQUEST_TIMEOUT="2", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
            for path, args in commands:
                proxy.faults = {path: fault}
                code, out, err, _ = flowops_at(repo, env, *args)
                lines = [line for line in err.splitlines() if line not in retry_lines(err)]
                assert code == 1, f"flowops {args[0]} with {fault}: {out}{err}"
                assert len(lines) == 1 and lines[0].startswith(f"tracking server {proxy.uri}"), f"{args[0]}: {err}"
                assert said in lines[0], (fault, lines[0])
                assert "first" not in out and "no model" not in out.lower()  # no claim made on a failed read
                assert any(kind == fault for _, seen_path, kind in proxy.seen if path in seen_path)
    assert str(holder("production").version) == "1" and str(holder("staging").version) == "1"
    assert len(client.search_model_versions("name = 'team-model'")) == versions  # nothing registered either
    assert audit() == records


def test_an_alias_move_the_server_applied_before_answering_an_error_is_recorded_done(served):
    """#32.3: the server applies set_registered_model_alias and the client hears an error (a timeout
    after the write, a proxy's 500). The alias moved: its audit record is settled done, not deleted
    (which left a moved alias with no record), and the promote goes on."""
    server, repo, second = served
    before = audit()
    with FaultProxy(server.uri) as proxy:
        proxy.faults = {"POST /api/2.0/mlflow/registered-models/alias": "500-after"}
        env = flowops_env(proxy.uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        code, out, err, _ = flowops_at(repo, env, "promote", "--git-range", second)
        moves = [path for _, path, kind in proxy.seen if kind == "500-after"]
    assert code == 0, out + err
    assert len(moves) >= 2, proxy.seen  # staging's and production's moves each answered 500 (after applying)
    assert str(holder("production").version) == "2" and str(holder("staging").version) == "2"
    added = audit()[len(before) :]
    assert sorted((r["alias"], r["to_version"], r["state"]) for r in added) == [
        ("production", "2", "done"),
        ("staging", "2", "done"),
    ], added


def test_a_slow_but_live_server_is_waited_for(served):
    """#32.23: each try waited 3 s for an answer, so a live server answering in 3-4 s under load (a
    loaded CI runner, auth on every request) failed promotes with "cannot be reached"; one CI run
    of this suite failed exactly so. With flowops' own defaults, a 4 s answer is waited for."""
    server, repo, second = served
    with FaultProxy(server.uri) as proxy:
        proxy.faults = {"runs/search": "slow", "registered-models/alias": "slow"}
        code, out, err, _ = flowops_at(repo, flowops_env(proxy.uri), "promote", "--git-range", second)
        slowed = sum(kind == "slow" for _, _, kind in proxy.seen)
    assert code == 0 and "retrying" not in err, out + err
    assert slowed >= 3, slowed  # the searches and the alias reads and moves each took 4 s
    assert str(holder("production").version) == "2"


def test_a_dead_server_fails_each_command_within_15_seconds(tmp_path, store):
    """Beyond what the command costs anyway (starting, importing MLflow: measured in the same run on a
    store that answers, so a loaded machine moves both), a dead server costs at most 15 s of waiting,
    not MLflow's default of about four minutes."""
    port = free_port()  # a port nothing listens on (this worker's own: no other test will take it)
    repo = TeamRepo(tmp_path / "team", POLICY)
    merged = repo.merge("merge", {"a.yaml": spec("a")})
    uri = f"http://127.0.0.1:{port}"
    env = flowops_env(uri)  # flowops' own defaults, nothing overridden
    for args in (["promote", "--git-range", merged], ["status"], ["history"], ["report", "--run", "0" * 32],
                 ["rollback", "--alias", "production"]):  # fmt: skip
        *_, baseline = flowops_at(repo, flowops_env(store), "history")
        code, out, err, elapsed = flowops_at(repo, env, *args)
        last = err.strip().splitlines()[-1]
        assert code == 1 and last.startswith(f"tracking server {uri} cannot be reached: "), f"{args[0]}: {out}{err}"
        assert elapsed - baseline < 15, f"flowops {args[0]} took {elapsed:.1f} s ({baseline:.1f} s answered)"
        assert len(retry_lines(err)) == 2, err  # it says that it retries, then gives up


def log_forged(run_id: str, repo: TeamRepo, **params: str) -> str:
    """A run logged by someone who copies the genuine run's tags and links its model: only `params` differ."""
    client = MlflowClient()
    genuine = client.get_run(run_id)
    forged = client.create_run(genuine.info.experiment_id, run_name="forged")
    forged_id = forged.info.run_id
    for key, value in {**genuine.data.params, **params}.items():
        client.log_param(forged_id, key, value)
    for key, value in genuine.data.tags.items():
        if key.startswith("flowops."):
            client.set_tag(forged_id, key, value)
    client.log_metric(forged_id, "val_iou", 0.99)
    model_id = genuine.outputs.model_outputs[0].model_id
    client.log_outputs(forged_id, [LoggedModelOutput(model_id, 0)])
    client.set_terminated(forged_id, "FINISHED")
    return forged_id


def test_a_forged_run_is_refused_and_the_genuine_one_ships(repo):
    genuine = fake_run(repo, spec("a"), 0.5)
    log_forged(genuine, repo, epochs="1", learning_rate="0.5")
    code, out, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert (code, err) == (0, "")
    assert holder("production").run_id == genuine
    assert "epochs: the run was trained with 1, the merged file says 10" in out


def test_a_forged_run_alone_is_refused_naming_the_field(repo):
    genuine = fake_run(repo, spec("a"), 0.5)
    log_forged(genuine, repo, epochs="1")
    MlflowClient().delete_run(genuine)
    code, _, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 1
    assert err.startswith("experiments/a.yaml: no run qualifies: run ") and "epochs: the run was trained with 1" in err
    assert MlflowClient().search_model_versions("name = 'team-model'") == []


def test_a_copied_model_is_refused(repo):
    genuine = fake_run(repo, spec("a"), 0.5)
    forged = log_forged(genuine, repo)  # same parameters and tags, the genuine run's model
    MlflowClient().delete_run(genuine)
    code, _, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 1
    assert f"run {forged[:8]}: model: " in err and f"was logged by run {genuine}, not by this run" in err


def test_a_run_trained_on_uncommitted_code_is_refused(repo):
    fake_run(repo, spec("a"), 0.5, dirty=True)
    code, _, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 1 and "it was trained on uncommitted code" in err


def test_the_earliest_qualifying_run_is_bound_and_a_later_one_changes_nothing(repo):
    """#29: no "trained for this merge" guess from a claimed commit, no newest-first window: the
    earliest run that qualifies, so a run logged after the merge cannot take the merge over."""
    first = fake_run(repo, spec("a"), 0.5)
    repo.git("checkout", "-q", "-b", "elsewhere")  # a branch that is never merged, same code
    (repo.path / "notes.txt").write_text("not merged\n")
    repo.commit("elsewhere")
    second = fake_run(repo, spec("a"), 0.6)
    repo.git("checkout", "-q", "main")
    code, out, _ = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 0 and holder("production").run_id == first != second
    assert "chosen: logged by hand (no import record; the policy ships such runs), the earliest that qualifies" in out
    assert "; 1 other run(s) also qualified" in out
    later = fake_run(repo, spec("a"), 0.9)  # after the merge, better
    before = repo.head
    (repo.path / "NOTES.md").write_text("docs only\n")
    code, out, _ = promote(repo, "--git-range", f"{before}..{repo.commit('docs')}")
    assert code == 0 and holder("production").run_id == first != later


def test_exit_codes_mixed_merge_and_kept_out_by_policy(repo):
    fake_run(repo, spec("a"), 0.5)
    code, out, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a"), "u.yaml": spec("u")}))
    assert code == 1 and "experiments/u.yaml: no FINISHED run" in err  # the untrained one is refused ...
    assert str(holder("production").version) == "1"  # ... the trained one is applied
    fake_run(repo, spec("weak"), 0.05)
    code, out, err = promote(repo, "--git-range", repo.merge("merge", {"weak.yaml": spec("weak")}))
    assert (code, err) == (0, "")  # kept out on purpose: not an error
    weak = MlflowClient().get_model_version("team-model", "2")
    assert weak.tags["flowops.status"] == "rejected" and "val_iou 0.05 fails >= 0.1" in weak.tags["flowops.rejected"]
    assert "experiments/weak.yaml: v2 kept out by the policy (tagged rejected)" in out
    assert str(holder("production").version) == "1" and str(holder("staging").version) == "1"


def test_a_second_rollback_does_not_toggle(repo):
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.6)
    promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    promote(repo, "--git-range", repo.merge("merge", {"b.yaml": spec("b")}))
    policy = str(repo.path / "registry_policy.yaml")
    first = subprocess.run([str(BIN / "flowops"), "rollback", "--alias", "production", "--policy", policy],
                           capture_output=True, text=True)  # fmt: skip
    assert (first.returncode, first.stdout) == (0, "production: v2 -> v1 (rollback: rollback)\n"), first.stderr
    second = subprocess.run([str(BIN / "flowops"), "rollback", "--alias", "production", "--policy", policy],
                            capture_output=True, text=True)  # fmt: skip
    assert second.returncode == 1
    assert second.stderr == "production: v1 already holds it (the holder before its last promote)\n"
    assert str(holder("production").version) == "1"
    never = subprocess.run([str(BIN / "flowops"), "rollback", "--alias", "production", "--to", "3", "--policy", policy],
                           capture_output=True, text=True)  # fmt: skip
    assert never.stderr == "model 'team-model' has no version '3'\n"
