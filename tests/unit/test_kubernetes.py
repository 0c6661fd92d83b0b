"""Multi-worker manifests for a cluster: rendered, checked offline against the API models, placed."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli
from flowops.errors import FlowopsError
from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.training import distribute
from flowops.training import kubernetes

SPEC = ExperimentSpec.model_validate({"name": "Person_256.v2", "categories": ["person"], "image_size": 256})
CONFIG = {"image": "registry.internal/flowops:3f2a1c9", "secret": "mlflow-credentials", "gpus-per-worker": 1}


def config(tmp_path, **changes):
    path = tmp_path / "backend.json"
    path.write_text(json.dumps({**CONFIG, **changes}))
    return kubernetes.read_config(path)


def test_an_indexed_job_and_a_headless_service_that_place_every_worker(tmp_path):
    service, job = kubernetes.render(SPEC, "experiments/person.yaml", 3, config(tmp_path))
    name = job["metadata"]["name"]
    assert name.startswith("flowops-person-256-v2-") and len(f"{name}-63") <= 63  # a valid pod host name
    assert (
        service["spec"]["clusterIP"] == "None"
        and service["spec"]["selector"] == job["spec"]["template"]["metadata"]["labels"]
    )
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed",
        3,
        3,
        0,
    )
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == name
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    hosts = dict((e["name"], e["value"]) for e in container["env"])["FLOWOPS_WORKER_HOSTS"].split(",")
    assert hosts == [f"{name}-{i}.{name}:2222" for i in range(3)]
    argv = container["command"]
    assert argv[:3] == ["python", "-m", "flowops.train"]
    assert argv[argv.index("--experiment_file") + 1] == "experiments/person.yaml"
    assert argv[argv.index("--image_size") + 1] == "256"
    for manifest in (service, job):
        kubernetes.check(manifest)


def test_each_pod_builds_its_tf_config_from_its_completion_index(monkeypatch):
    # The code under test sets TF_CONFIG itself (as a pod needs): restored to absent afterwards.
    monkeypatch.setenv("TF_CONFIG", "")
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv(distribute.WORKER_HOSTS_ENV, "job-0.job:2222,job-1.job:2222")
    monkeypatch.setenv(distribute.INDEX_ENV, "1")
    place = distribute.cluster()
    assert place == distribute.Cluster(workers=2, index=1) and not place.chief
    config = json.loads(os.environ["TF_CONFIG"])
    assert config == {
        "cluster": {"worker": ["job-0.job:2222", "job-1.job:2222"]},
        "task": {"type": "worker", "index": 1},
    }


def test_a_tfjob_for_the_kubeflow_operator(tmp_path):
    (tfjob,) = kubernetes.render(SPEC, "experiments/person.yaml", 2, config(tmp_path, operator="tfjob"))
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2 and worker["template"]["spec"]["containers"][0]["name"] == "tensorflow"
    assert "env" not in worker["template"]["spec"]["containers"][0]  # the operator sets TF_CONFIG
    kubernetes.check(tfjob)


@pytest.mark.parametrize("operator", ["job", "tfjob"])
def test_offline_validation_rejects_unknown_and_missing_fields(tmp_path, operator):
    manifests = kubernetes.render(SPEC, "e.yaml", 2, config(tmp_path, operator=operator))
    misspelt = copy.deepcopy(manifests[-1])
    misspelt["spec"]["completionsMode" if operator == "job" else "runPolicyy"] = "Indexed"
    with pytest.raises(FlowopsError, match=r"fields the API does not know: spec\.(completionsMode|runPolicyy)"):
        kubernetes.check(misspelt)
    nameless = copy.deepcopy(manifests[-1])
    template = (
        nameless["spec"]["template"] if operator == "job" else nameless["spec"]["tfReplicaSpecs"]["Worker"]["template"]
    )
    del template["spec"]["containers"][0]["name"]
    with pytest.raises(FlowopsError, match="name"):
        kubernetes.check(nameless)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": ""}, "'image' is required"),
        ({"secret": None}, "'secret' is required"),
        ({"operator": "mpi"}, "operator 'mpi' must be one of job, tfjob"),
        ({"gpus-per-worker": -1}, "gpus-per-worker -1 must be a whole number"),
        ({"imagee": "x"}, "unknown key 'imagee'"),
    ],
)
def test_a_bad_backend_config_is_named_with_its_key_and_rule(tmp_path, changes, message):
    with pytest.raises(FlowopsError, match=message):
        config(tmp_path, **changes)


def test_flowops_train_writes_the_manifests_and_creates_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'never.db'}")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "person.yaml").write_text(yaml.safe_dump({"name": "person", "categories": ["person"]}))
    (tmp_path / "backend.json").write_text(json.dumps(CONFIG))
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "experiments/person.yaml",
            "--backend",
            "kubernetes",
            "--workers",
            "2",
            "--backend-config",
            "backend.json",
            "--manifests",
            "k8s",
        ],
    )
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "k8s").glob("*.yaml")
    kinds = [doc["kind"] for doc in yaml.safe_load_all(written.read_text())]
    assert kinds == ["Service", "Job"] and f"kubectl apply -f k8s/{written.name}" in result.output
    assert not (tmp_path / "never.db").exists()  # pod 0 creates the run, when the job runs


def test_the_servers_worker_count_is_not_a_training_setting(monkeypatch):
    """Hardening 3 item 10: with the tracking server's env file sourced (FLOWOPS_WORKERS=4), a
    training started 4 worker processes; training reads FLOWOPS_TRAIN_WORKERS only."""
    from flowops.segmentation.training.run import check_distribution

    for name in ("TF_CONFIG", distribute.WORKER_HOSTS_ENV, "FLOWOPS_CPU_REPLICAS", "FLOWOPS_TRAIN_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWOPS_WORKERS", "4")
    assert check_distribution() == 1
    monkeypatch.setenv("FLOWOPS_TRAIN_WORKERS", "3")
    assert check_distribution() == 3
