"""Promotion on merge: real git repositories in temp dirs and a real MLflow store.

Most runs here carry metrics and a tiny real pyfunc model logged directly (training is
not what these tests are about); `test_end_to_end_with_a_trained_model` trains for real.
"""

from __future__ import annotations

import getpass
import itertools
import json
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from flowops.cli import cli
from flowops.gitops import lineage
from flowops.registry.store import AUDIT_PREFIX
from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.params import spec_to_params

from ..gitrepo import GitRepo
from .conftest import BIN, experiment_id, flowops, tiny_spec

POLICY = {
    "model_name": "team-model",
    "primary_metric": "val_iou",
    "targets": {
        "staging": {"thresholds": [{"metric": "val_iou", "min": 0.1}]},
        "production": {"thresholds": [{"metric": "val_iou", "min": 0.2}], "improve": {"absolute": 0.01}},
    },
}


class EchoModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


class TeamRepo(GitRepo):
    """A git repository with this project's code, a policy, and PRs merged three ways.

    With policy=None it is a copy of the whole repository (tracked and untracked-but-not-ignored
    files, as a fresh clone plus the working changes), its own policy included.
    """

    def __init__(self, path: Path, policy: dict | None):
        super().__init__(path, ["src", "MLproject", "conda.yaml"] if policy is not None else [])
        if policy is not None:
            # These tests log their runs by hand (their subject is promotion, a server, a fault), also
            # on a tracking server: they ship, as a team allowing it has them. test_bundle and test_act
            # promote imported runs with the default.
            policy = {"ship_hand_logged_runs": True, **policy}
            (path / "registry_policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
        self.commit("code and policy")

    def merge(self, how: str, changes: dict[str, dict | None]) -> str:
        """A PR changing experiment files (None deletes), merged into main; returns 'before..after'."""
        before = self.head
        self.git("checkout", "-q", "-b", "pr")
        for name, spec in changes.items():
            target = self.path / "experiments" / name
            if spec is None:
                target.unlink()
            else:
                target.parent.mkdir(exist_ok=True)
                target.write_text(
                    "# yaml-language-server: $schema=schema.json\n" + yaml.safe_dump(spec, sort_keys=False)
                )
        self.commit("PR: " + ", ".join(changes))
        self.git("checkout", "-q", "main")
        if how == "merge":
            self.git("merge", "-q", "--no-ff", "pr", "-m", "Merge pull request #1")
        elif how == "squash":
            self.git("merge", "-q", "--squash", "pr")
            self.git("commit", "-qm", "squashed PR")
        else:
            self.git("merge", "-q", "--ff-only", "pr")
        self.git("branch", "-q", "-D", "pr")
        return f"{before}..{self.head}"


def spec(name: str, **kw) -> dict:
    return {"name": name, "categories": ["person"], "experiment_name": "team", "dataset": {"root": "data/x"}, **kw}


@pytest.fixture
def repo(tmp_path, store) -> TeamRepo:
    return TeamRepo(tmp_path / "team", POLICY)


EVAL_SET = "e7a1" * 16


def fake_run(
    repo: TeamRepo,
    spec_dict: dict,
    val_iou: float,
    code_tree: str | None = None,
    model: bool = True,
    pr: str = "7",
    dirty: bool = False,
    eval_set: str | None = None,
) -> str:
    """A FINISHED run as training would leave it: the spec's parameters, lineage tags, metrics, a (tiny) pyfunc model."""
    s = ExperimentSpec.model_validate(spec_dict)
    exp_id = experiment_id(s.experiment_name)
    with mlflow.start_run(experiment_id=exp_id, run_name=s.name) as run:
        mlflow.log_params({**spec_to_params(s), "experiment_file": f"experiments/{s.name}.yaml"})
        mlflow.set_tags(
            {
                "flowops.spec_sha256": s.sha256(),
                "flowops.code_tree": code_tree or lineage.code_tree("HEAD", repo=repo.path),
                "flowops.code_dirty": "true" if dirty else "false",
                "flowops.pr_number": pr,
                "flowops.git_commit": repo.head,
                "flowops.eval_set": eval_set or EVAL_SET,  # by default every fake run is scored on the same data
            }
        )
        mlflow.log_metrics(
            {"val_iou": val_iou, "val_miou": val_iou, "val_loss": 1 - val_iou, "val_iou.person": val_iou}
        )
        if model:
            mlflow.pyfunc.log_model(name="model", python_model=EchoModel(), pip_requirements=["mlflow"])
    return run.info.run_id


def promote(repo: TeamRepo, *args: str):
    result = CliRunner().invoke(cli, ["promote", "--repo", str(repo.path), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def holder(alias: str):
    try:
        return MlflowClient().get_model_version_by_alias("team-model", alias)
    except mlflow.exceptions.MlflowException:
        return None


def audit(alias: str | None = None) -> list[dict]:
    tags = MlflowClient().get_registered_model("team-model").tags
    records = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(AUDIT_PREFIX)]
    return [r for r in records if alias is None or r["alias"] == alias]


def test_merge_commit_promotes_and_tags_everything(repo, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    run_id = fake_run(repo, spec("a"), 0.5)
    rng = repo.merge("merge", {"a.yaml": spec("a")})
    code, out, err = promote(repo, "--git-range", rng)
    assert (code, err) == (0, "")
    assert f"experiments/a.yaml: run {run_id} -> v1 (new)" in out
    assert "production: moved unset -> v1 (experiments/a.yaml)" in out
    prod = holder("production")
    assert (str(prod.version), prod.run_id) == ("1", run_id)
    assert str(holder("staging").version) == "1"
    tags = prod.tags
    after = repo.head
    assert (
        tags["flowops.spec_path"],
        tags["flowops.merge_commit"],
        tags["flowops.run_id"],
        tags["flowops.pr_number"],
    ) == ("experiments/a.yaml", after, run_id, "7")
    assert tags["flowops.spec_sha256"] == ExperimentSpec.model_validate(spec("a")).sha256()
    records = audit("production")
    assert len(records) == 1
    r = records[0]
    assert (r["from_version"], r["to_version"], r["kind"], r["commit"], r["pr"]) == (None, "1", "promote", after, "7")
    assert (r["actor"], r["user"]) == ("octocat", getpass.getuser())  # GitHub's actor; the store's identity
    assert len(r["policy_sha256"]) == 64 and "ok: val_iou 0.5 meets >= 0.2" in r["summary"]


def test_same_promote_twice_changes_nothing(repo):
    fake_run(repo, spec("a"), 0.5)
    rng = repo.merge("merge", {"a.yaml": spec("a")})
    assert promote(repo, "--git-range", rng)[0] == 0
    before = (audit(), MlflowClient().search_model_versions("name = 'team-model'"))
    code, out, _ = promote(repo, "--git-range", rng)
    assert code == 0
    assert "production: v1 (experiments/a.yaml) already holds it; nothing to do" in out
    assert "-> v1\n" in out and "(new)" not in out
    assert audit() == before[0]
    assert len(MlflowClient().search_model_versions("name = 'team-model'")) == len(before[1]) == 1


def test_a_run_scored_on_other_data_is_not_compared_and_moves_nothing(repo):
    fake_run(repo, spec("a"), 0.5)
    assert promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))[0] == 0
    before = holder("production").version
    fake_run(repo, spec("b", dataset={"root": "data/tutorial"}), 0.9, eval_set="7" * 64)
    code, out, _ = promote(
        repo, "--git-range", repo.merge("merge", {"b.yaml": spec("b", dataset={"root": "data/tutorial"})})
    )
    assert code == 0
    assert f"FAIL not comparable: different evaluation data (eval set 777777777777 vs e7a1e7a1e7a1 of v{before})" in out
    assert "production: stays at v1" in out and holder("production").version == before


def test_squash_replaces_fast_forward_is_kept_out_with_reasons(repo):
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.6)
    fake_run(repo, spec("c"), 0.15)
    assert promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))[0] == 0
    code, out, _ = promote(repo, "--git-range", repo.merge("squash", {"b.yaml": spec("b")}))
    assert code == 0 and "production: moved v1 -> v2 (experiments/b.yaml)" in out
    code, out, _ = promote(repo, "--git-range", repo.merge("ff", {"c.yaml": spec("c")}))
    assert code == 0
    assert "FAIL val_iou 0.15 fails >= 0.2" in out
    assert "FAIL val_iou 0.15 vs 0.6 (v2): not better by -0.45, needs >= 0.01" in out
    assert "production: stays at v2" in out and "staging: moved v2 -> v3 (experiments/c.yaml)" in out
    assert [(r["from_version"], r["to_version"]) for r in audit("production")] == [(None, "1"), ("1", "2")]
    assert MlflowClient().get_model_version("team-model", "1").tags["flowops.status"] == "archived"


def test_one_merge_with_two_experiments_promotes_the_best(repo):
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.7)
    code, out, _ = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a"), "b.yaml": spec("b")}))
    assert code == 0
    assert (
        "production: moved unset -> v2 (experiments/b.yaml) (also qualified, ranked lower: experiments/a.yaml)" in out
    )
    assert str(holder("production").version) == "2"


def test_deleted_experiment_is_reported_and_skipped(repo):
    fake_run(repo, spec("a"), 0.5)
    promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    code, out, _ = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": None}))
    assert code == 0
    assert "experiments/a.yaml: deleted in this merge: nothing to promote" in out
    assert "no trained experiment in this merge" in out
    assert str(holder("production").version) == "1"


def test_untrained_experiment_is_an_error_and_moves_nothing(repo):
    fake_run(repo, spec("a", epochs=3), 0.5)  # trained with other settings than merged
    code, _out, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    sha = ExperimentSpec.model_validate(spec("a")).sha256()[:12]
    assert code == 1
    assert err == f"experiments/a.yaml: no FINISHED run with spec sha256 {sha}: open a PR to train it\n"
    assert MlflowClient().search_registered_models() == []


def test_stale_code_is_refused(repo):
    run_id = fake_run(repo, spec("a"), 0.9, code_tree="1" * 40)
    code, _, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 1
    assert err.startswith(f"experiments/a.yaml: no run qualifies: run {run_id[:8]}: code tree 111111111111 is not ")
    assert err.rstrip().endswith("retrain on the merged code")
    assert MlflowClient().search_registered_models() == []


def test_run_without_model_registers_nothing(repo):
    run_id = fake_run(repo, spec("a"), 0.5, model=False)
    code, _, err = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    assert code == 1
    assert err == (
        f"experiments/a.yaml: no run qualifies: run {run_id[:8]}: model: the run has no logged model 'model' "
        "(it did not finish training; retrain it)\n"
    )
    assert MlflowClient().search_registered_models() == []  # refused before anything was created


def test_dry_run_changes_nothing(repo):
    fake_run(repo, spec("a"), 0.5)
    code, out, _ = promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}), "--dry-run")
    assert code == 0
    assert (
        "not registered (dry run)" in out
        and "production: would move unset -> v(new version) (experiments/a.yaml)" in out
    )
    assert MlflowClient().search_registered_models() == []


@pytest.mark.parametrize(
    "rng, message",
    [
        ("HEAD", "--git-range 'HEAD': expected BEFORE..AFTER (two commits)"),
        ("HEAD..nope", "--git-range HEAD..nope: 'nope' is not a commit in {repo}"),
        ("deadbeef..HEAD", "--git-range deadbeef..HEAD: 'deadbeef' is not a commit in {repo}"),
    ],
)
def test_bad_git_range(repo, rng, message):
    code, out, err = promote(repo, "--git-range", rng)
    assert (code, out, err) == (1, "", message.format(repo=repo.path) + "\n")


def test_rollback_history_and_status(repo):
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.6)
    promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    promote(repo, "--git-range", repo.merge("merge", {"b.yaml": spec("b")}))
    runner = CliRunner()
    policy = ["--policy", str(repo.path / "registry_policy.yaml")]
    result = runner.invoke(cli, ["rollback", "--alias", "production", "--reason", "bad canary", *policy])
    assert (result.exit_code, result.stdout) == (0, "production: v2 -> v1 (rollback: bad canary)\n")
    assert str(holder("production").version) == "1"
    result = runner.invoke(cli, ["history", "--alias", "production", *policy])
    *lines, hold = result.stdout.splitlines()
    assert hold.startswith("production: held at v1 by rollback on ") and "(bad canary)" in hold
    assert [line.split()[1:5] for line in lines[::2]] == [
        ["production", "unset", "->", "v1"],
        ["production", "v1", "->", "v2"],
        ["production", "v2", "->", "v1"],
    ]
    assert "rollback by" in lines[4] and lines[5].strip() == "bad canary"
    result = runner.invoke(cli, ["status", *policy])
    assert result.stdout.startswith("staging: v2  val_iou 0.6000  spec experiments/b.yaml")
    assert "production: v1  val_iou 0.5000  spec experiments/a.yaml" in result.stdout
    result = runner.invoke(cli, ["rollback", "--alias", "production", "--to", "2", *policy])
    assert (result.exit_code, str(holder("production").version)) == (0, "2")
    result = runner.invoke(cli, ["rollback", "--alias", "prod", *policy])
    assert (result.exit_code, result.stderr) == (
        1,
        "unknown alias 'prod' (did you mean 'production'?); the policy has: staging, production\n",
    )
    result = runner.invoke(cli, ["rollback", "--alias", "staging", "--to", "9", *policy])
    assert (result.exit_code, result.stderr) == (1, "model 'team-model' has no version '9'\n")


def test_legacy_stages_are_mirrored(tmp_path, store):
    repo = TeamRepo(tmp_path / "legacy", {**POLICY, "legacy_stages": True})
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.6)
    promote(repo, "--git-range", repo.merge("merge", {"a.yaml": spec("a")}))
    promote(repo, "--git-range", repo.merge("merge", {"b.yaml": spec("b")}))
    client = MlflowClient()
    assert client.get_model_version("team-model", "2").current_stage == "Production"  # holds staging too
    assert client.get_model_version("team-model", "1").current_stage == "Archived"
    assert (
        CliRunner()
        .invoke(cli, ["rollback", "--alias", "production", "--policy", str(repo.path / "registry_policy.yaml")])
        .exit_code
        == 0
    )
    assert client.get_model_version("team-model", "1").current_stage == "Production"
    assert client.get_model_version("team-model", "2").current_stage == "Staging"


def test_two_promotes_racing_end_in_a_state_the_policy_allows(repo, store):
    """Two processes promote two merges at once; serialised, the better model must end in
    production whichever goes first, and the trail must be one unbroken chain."""
    fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("b"), 0.7)
    first = repo.merge("merge", {"a.yaml": spec("a")})
    second = repo.merge("merge", {"b.yaml": spec("b")})
    procs = [
        subprocess.Popen(
            [str(BIN / "flowops"), "promote", "--repo", str(repo.path), "--git-range", rng],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rng in (second, first)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    prod = holder("production")
    assert MlflowClient().get_run(prod.run_id).data.metrics["val_iou"] == 0.7
    chain = audit("production")
    assert chain[0]["from_version"] is None
    assert all(later["from_version"] == earlier["to_version"] for earlier, later in itertools.pairwise(chain))
    assert chain[-1]["to_version"] == str(prod.version)
    assert not any(k.startswith("flowops.intent.") for k in MlflowClient().get_registered_model("team-model").tags)


def test_end_to_end_with_a_trained_model(tmp_path, store, synth_root):
    """Train on the PR branch through the real MLproject, merge, promote, load @production."""
    # A floor any trained model meets: this is about the loop, not about tiny-model quality.
    repo = TeamRepo(
        tmp_path / "e2e",
        {"model_name": "team-model", "targets": {"production": {"thresholds": [{"metric": "val_iou", "min": 0.0}]}}},
    )
    experiment = tiny_spec(synth_root, name="real", experiment_name="team")
    path = repo.path / "experiments" / "real.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    trained = flowops("train", "experiments/real.yaml", cwd=repo.path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    path.unlink()
    code, out, _ = promote(repo, "--git-range", repo.merge("squash", {"real.yaml": experiment}))
    assert code == 0, out
    assert "production: moved unset -> v1 (experiments/real.yaml)" in out
    assert holder("production").tags["flowops.code_tree"] == lineage.code_tree("HEAD", repo=repo.path)
    model = mlflow.pyfunc.load_model("models:/team-model@production")
    masks = model.predict(np.zeros((1, 40, 30, 3), dtype=np.uint8))
    assert masks.shape == (1, 40, 30) and masks.max() <= 3


def test_a_fast_forward_of_two_commits_ships_the_last_state_and_exits_0(repo):
    """#32.7: a PR edited its experiment in two commits and was merged by fast-forward (a rebase
    merge does the same): both land on main's first-parent line. Only the head was trained; the first
    state never reached the tip, so it is said, not an error. The last state untrained still is one."""

    def write(name: str, spec_dict: dict) -> None:
        (repo.path / "experiments").mkdir(exist_ok=True)
        (repo.path / "experiments" / name).write_text(yaml.safe_dump(spec_dict, sort_keys=False))

    before = repo.head
    repo.git("checkout", "-q", "-b", "pr")
    write("a.yaml", spec("a", epochs=5))
    first = repo.commit("a: 5 epochs")
    write("a.yaml", spec("a", epochs=10))
    second = repo.commit("a: 10 epochs, after review")
    run_id = fake_run(repo, spec("a", epochs=10), 0.5)  # CI trained the head
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "pr")
    code, out, err = promote(repo, "--git-range", f"{before}..{repo.head}")
    assert (code, err) == (0, ""), out + err
    assert holder("production").run_id == run_id
    assert (
        f"experiments/a.yaml: its state at {first[:12]} (not trained) was changed again by {second[:12]} in this "
        "push: it never reached main's tip and nothing ships it"
    ) in out
    # The last state of a push is never excused: an untrained tip still fails.
    before = repo.head
    write("a.yaml", spec("a", epochs=20))
    repo.commit("a: 20 epochs, pushed straight to main")
    code, out, err = promote(repo, "--git-range", f"{before}..{repo.head}")
    assert code == 1 and "experiments/a.yaml: no FINISHED run with spec sha256" in err, out + err


def test_a_bind_reads_each_runs_logged_model_once(repo):
    """Binding checks every candidate's logged model, then hands the chosen one's on: one read each
    (it read the chosen run's twice, and a promote binds every experiment on main)."""
    from flowops.promotion.binding import Merged, bind, logged_model

    first = fake_run(repo, spec("a"), 0.5)
    fake_run(repo, spec("a"), 0.6)
    repo.merge("merge", {"a.yaml": spec("a")})
    reads: list[str] = []

    class Counting:
        """The real client, its logged-model reads counted."""

        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            return getattr(self.client, name)

        def get_logged_model(self, model_id):
            reads.append(model_id)
            return self.client.get_logged_model(model_id)

    merged = Merged(repo.head, lineage.code_tree("HEAD", repo=repo.path), None)
    s = ExperimentSpec.model_validate(spec("a"))
    bound = bind(Counting(MlflowClient()), s, merged, same_code=False, hand_logged=True, repo=repo.path)
    assert bound.run.info.run_id == first  # the earliest that qualifies
    assert bound.model_id == logged_model(MlflowClient(), bound.run)
    assert len(reads) == 2 and len(set(reads)) == 2, reads  # two runs, each model read once
