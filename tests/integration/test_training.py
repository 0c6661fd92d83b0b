"""Tiny CPU trainings through the real MLproject into a temporary SQLite store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.params import EXTRA_PARAMETERS, PARAMETERS

from ..conftest import REPO
from .conftest import BIN, flowops, tiny_spec, write_experiment

EPOCH_METRICS = ("loss", "iou", "f1", "val_loss", "val_iou", "val_f1")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_run):
    """The same experiment trained twice with `flowops train` (for the record and for determinism):
    the first is the run's shared tiny training, the second is trained here into a copy of its
    store and cache."""
    tmp = tmp_path_factory.mktemp("train")
    mp = pytest.MonkeyPatch()
    uri = tiny_run.copy_to(tmp)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("FLOWOPS_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("PATH", f"{BIN}:{os.environ['PATH']}")
    results = [tiny_run.result, flowops("train", str(tiny_run.experiment))]
    mlflow.set_tracking_uri(uri)
    yield uri, tiny_run.experiment, tiny_run.spec, results
    mp.undo()


def finished_runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("integration")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_flowops_train_records_params_metrics_lineage_and_artifacts(two_runs):
    uri, path, spec, results = two_runs
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-3000:]
    runs = finished_runs(uri)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    run = runs[0]
    assert run.info.run_name == "tiny"
    # the trainer's own output comes first; flowops train ends with the run and how to open it
    # (the second run: the first was trained into the store this module's store copies)
    summary = results[1].stdout.splitlines()[-2:]
    assert summary[0] == f"run {runs[1].info.run_id} FINISHED: tiny"
    assert summary[1].startswith(f"mlflow ui --backend-store-uri {uri}   # then open experiment")
    # params: the whole resolved spec
    params = run.data.params
    assert set(params) == set(PARAMETERS) | set(EXTRA_PARAMETERS)
    assert (params["epochs"], params["image_size"], params["categories"], params["encoder_weights"]) == (
        "2",
        "32",
        "person,car,dog",
        "none",
    )
    # one value per epoch for every epoch metric, plus per-class IoU at the end
    client = MlflowClient(uri)
    for key in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
    for name in ("background", "person", "car", "dog"):
        assert 0.0 <= run.data.metrics[f"val_iou.{name}"] <= 1.0
    # lineage
    tags = run.data.tags
    expected_sha = ExperimentSpec.model_validate(spec).sha256()
    assert tags["flowops.spec_sha256"] == expected_sha
    assert tags["flowops.experiment_file"] == str(path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert tags["flowops.git_commit"] == head
    assert len(tags["flowops.code_tree"]) == 40 and len(tags["flowops.dataset_fingerprint"]) == 64
    assert "tensorflow==2.21.0" in tags["flowops.versions"] and "x" in tags["flowops.hardware"]
    assert int(tags["flowops.images_train"]) > 0 and tags["flowops.images_skipped"] == "0"
    assert tags["flowops.precision"] == "float32"  # no GPU here: mixed precision stays off
    # artifacts
    files = {a.path for top in ("plots", "samples", "experiment") for a in client.list_artifacts(run.info.run_id, top)}
    assert files == {
        "plots/learning_curves.png",
        "plots/sample_predictions.png",
        "samples/samples.npz",
        "experiment/tiny.yaml",
    }
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="plots/learning_curves.png")
    assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    spec_yaml = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/spec.yaml")
    assert "architecture: Unet" in spec_yaml


# What TensorFlow's C++ runtime prints on a CPU machine unless told otherwise (absl's "I0000 ..."
# prefix, CUDA probing, oneDNN notes): noise for a flowops user, shown with --verbose only.
TF_NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit|cuda_|cudart|oneDNN|Segmentation Models: using", re.M)


def test_flowops_train_prints_no_tensorflow_log_lines(two_runs):
    *_, results = two_runs
    output = results[0].stdout + results[0].stderr
    assert "Epoch 2/2" in output  # progress still prints
    assert TF_NOISE.findall(output) == [], output[-3000:]


def test_verbose_shows_what_tensorflow_says(tmp_path):
    probe = "from flowops.segmentation.tfenv import configure_tensorflow\nconfigure_tensorflow()\n"
    loud = subprocess.run(
        [str(BIN / "python"), "-c", probe], capture_output=True, text=True, env={**os.environ, "FLOWOPS_VERBOSE": "1"}
    )
    quiet = subprocess.run(
        [str(BIN / "python"), "-c", probe], capture_output=True, text=True, env={**os.environ, "FLOWOPS_VERBOSE": "0"}
    )
    assert (loud.returncode, quiet.returncode) == (0, 0), loud.stderr + quiet.stderr
    assert TF_NOISE.findall(loud.stdout + loud.stderr) != []  # this machine has no GPU: TF says so
    assert quiet.stdout + quiet.stderr == ""


def test_cache_is_reused_by_the_second_run(two_runs):
    uri, *_ = two_runs
    first, second = finished_runs(uri)
    assert (first.data.tags["flowops.cache"], second.data.tags["flowops.cache"]) == ("built", "hit")
    assert first.data.tags["flowops.dataset_fingerprint"] == second.data.tags["flowops.dataset_fingerprint"]


def test_same_spec_and_seed_give_identical_metrics(two_runs):
    uri, *_ = two_runs
    first, second = finished_runs(uri)
    client = MlflowClient(uri)
    for key in EPOCH_METRICS:
        a = [m.value for m in client.get_metric_history(first.info.run_id, key)]
        b = [m.value for m in client.get_metric_history(second.info.run_id, key)]
        assert a == b, key
    assert first.data.metrics == second.data.metrics


def test_pyfunc_reloads_and_returns_masks_at_the_input_size(two_runs):
    uri, *_ = two_runs
    run = finished_runs(uri)[0]
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    images = np.random.default_rng(0).integers(0, 255, (2, 50, 70, 3), dtype=np.uint8)
    masks = model.predict(images)
    assert masks.shape == (2, 50, 70) and masks.dtype == np.uint8
    assert masks.min() >= 0 and masks.max() <= 3
    meta = json.loads(
        open(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model/artifacts/flowops_model.json")).read()
    )
    assert meta["class_names"] == ["background", "person", "car", "dog"] and meta["image_size"] == 32
    # the same image alone gives the same mask: no batch effects in preprocessing
    assert np.array_equal(model.predict(images[1:2])[0], masks[1])


def test_a_model_logged_before_the_template_moved_still_loads_and_predicts(two_runs, tmp_path):
    """#34 moved the pyfunc to flowops.segmentation.pyfunc; a model logged before pickled
    `flowops.pyfunc.SegmentationModel` (tests/data holds that pickle, written by the code before the
    move). Put in a model's folder, it unpickles through the old path to the same class and predicts
    the same masks."""
    import shutil

    from flowops.segmentation.pyfunc import SegmentationModel

    old = REPO / "tests" / "data" / "python_model.before-34.pkl"
    assert b"flowops.pyfunc" in old.read_bytes() and b"flowops.segmentation" not in old.read_bytes()
    uri, *_ = two_runs
    run = finished_runs(uri)[0]
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path)))
    new = mlflow.pyfunc.load_model(str(folder))
    shutil.copyfile(old, folder / "python_model.pkl")
    before = mlflow.pyfunc.load_model(str(folder))
    assert type(before.unwrap_python_model()).__name__ == SegmentationModel.__name__
    assert type(before.unwrap_python_model()).__module__ == "flowops.segmentation.pyfunc"
    images = np.random.default_rng(1).integers(0, 255, (2, 40, 60, 3), dtype=np.uint8)
    assert np.array_equal(before.predict(images), new.predict(images))


def test_mlflow_run_as_in_the_original_article(store, synth_root):
    cmd = [
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "--env-manager",
        "local",
        "--experiment-name",
        "article",
        "-P",
        "categories=person,car",
        "-P",
        "epochs=1",
        "-P",
        "image_size=32",
        "-P",
        "batch_size=4",
        "-P",
        "max_batches_per_epoch=2",
        "-P",
        f"dataset={synth_root}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("article").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "adhoc"
    assert run.data.params["categories"] == "person,car" and run.data.params["architecture"] == "Unet"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_iou")] == [1]
    assert set(run.data.metrics) >= {"val_iou.person", "val_iou.car", "val_miou"}
    assert run.data.tags["flowops.experiment_file"] == "(none: run with mlflow run -P)"


def test_bad_parameter_through_mlflow_run_ends_failed(store, synth_root):
    cmd = [
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "--env-manager",
        "local",
        "--experiment-name",
        "bad",
        "-P",
        "categories=person",
        "-P",
        "epochs=0",
        "-P",
        f"dataset={synth_root}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "flowops.train: parameter epochs: Input should be greater than or equal to 1 (got 0)" in proc.stderr
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("bad").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["flowops.failure"] == "parameter epochs: Input should be greater than or equal to 1 (got 0)"


def test_category_missing_from_dataset_fails_before_training(store, synth_root, tmp_path):
    path = write_experiment(tmp_path, tiny_spec(synth_root, name="zebras", categories=["zebra"]))
    proc = flowops("train", str(path))
    assert proc.returncode == 1
    reason = f"{synth_root}/annotations/instances_train.json: category 'zebra' is not in this dataset; it has: bicycle, car, dog, person"
    assert proc.stderr.splitlines()[-1].endswith(f"): {reason}")
    assert proc.stderr.splitlines()[-1].startswith("training zebras failed (run ")
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("integration").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["flowops.failure"] == reason
    assert "val_iou" not in run.data.metrics  # nothing was trained


def test_invalid_experiment_file_creates_no_run(store, tmp_path):
    path = write_experiment(tmp_path, {"name": "x", "categories": ["person"], "epochs": 0})
    proc = flowops("train", str(path))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert path.read_text().splitlines()[4] == "epochs: 0"
    assert proc.stderr == f"{path}:5: epochs: must be >= 1 (got 0)\n"
    assert MlflowClient(store).search_experiments(filter_string="name = 'coco-segmentation'") == []


def test_bad_mixed_precision_setting_is_refused_before_any_run(store, synth_root, tmp_path):
    path = write_experiment(tmp_path, tiny_spec(synth_root))
    env = {**os.environ, "FLOWOPS_MIXED_PRECISION": "yes"}
    proc = flowops("train", str(path), env=env)
    message = "environment FLOWOPS_MIXED_PRECISION: 'yes' is not allowed: use 1 (on), 0 (off) or leave it unset (on with a GPU)"
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", message + "\n")
    assert MlflowClient(store).search_experiments(filter_string="name = 'integration'") == []
    # Through `mlflow run`, which creates the run first: it ends FAILED with the reason.
    cmd = [
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "--env-manager",
        "local",
        "--experiment-name",
        "precision",
        "-P",
        "categories=person",
        "-P",
        f"dataset={synth_root}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("precision").experiment_id])
    assert proc.returncode != 0 and f"flowops.train: {message}" in proc.stderr
    assert (run.info.status, run.data.tags["flowops.failure"]) == ("FAILED", message)


def test_kubernetes_options_reach_mlflow(store, synth_root, tmp_path):
    """Kubernetes cannot run here (no cluster, no registry, no network): we check that
    `--backend kubernetes --backend-config` reach MLflow's Kubernetes backend, which tags the
    run and then stops at its docker check, and that the run does not stay RUNNING."""
    template = tmp_path / "job.yaml"
    template.write_text((REPO / "deploy" / "kubernetes" / "job-template.yaml").read_text())
    config = json.loads((REPO / "deploy" / "kubernetes" / "backend-config.json").read_text())
    config["kube-job-template-path"] = str(template)
    (tmp_path / "backend.json").write_text(json.dumps(config))
    path = write_experiment(tmp_path, tiny_spec(synth_root, name="on-k8s"))
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git"))
    env = {**os.environ, "PATH": f"{BIN}:{only_git}"}  # git but no docker: MLflow's docker check fails
    proc = flowops(
        "train", str(path), "--backend", "kubernetes", "--backend-config", str(tmp_path / "backend.json"), env=env
    )
    assert proc.returncode == 1
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("integration").experiment_id])
    assert (
        proc.stderr.splitlines()[-1]
        == f"training on-k8s failed (run {run.info.run_id}): Could not find Docker executable. Ensure Docker is installed as per the instructions at https://docs.docker.com/install/overview/."
    )
    assert run.data.tags["mlflow.project.backend"] == "kubernetes"
    assert run.info.status == "FAILED"


def _training_under_way(store, synth_root, tmp_path):
    """(process, its stderr log, the RUNNING run) of a long training that has logged a loss."""
    import sys
    import time

    from flowops.segmentation.params import spec_to_params

    spec = ExperimentSpec.model_validate(tiny_spec(synth_root, name="long", epochs=500, max_batches_per_epoch=1))
    argv = [x for k, v in spec_to_params(spec).items() for x in (f"--{k}", v)]
    # stderr to a file, not a pipe: a pipe nobody reads while waiting fills up (64 KiB of
    # TensorFlow and Keras output) and stalls the trainer on a busy machine.
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowops.train", *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr
        )
    client = MlflowClient(store)
    deadline = time.time() + 240
    run = None
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name("integration")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            run = runs[0]
            break
        time.sleep(0.5)
    assert run is not None and run.info.status == "RUNNING", (
        f"training never started: {log.read_text()[-3000:] if proc.poll() is not None else 'still no metric'}"
    )
    return proc, log, run


def test_interrupted_training_ends_failed(store, synth_root, tmp_path):
    """SIGTERM (a cancelled CI job) during training: the run ends FAILED, not RUNNING."""
    import signal

    proc, log, run = _training_under_way(store, synth_root, tmp_path)
    client = MlflowClient(store)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    assert log.read_text().splitlines()[-1] == "flowops.train: interrupted (signal 15)"
    final = client.get_run(run.info.run_id)
    assert final.info.status == "FAILED"
    assert final.data.tags["flowops.failure"] == "interrupted (signal 15)"


def test_sigint_then_sigterm_still_ends_the_run_failed(store, synth_root, tmp_path):
    """#32.9: what a cancelled GitHub job sends, SIGINT then SIGTERM: the second signal landed in the
    cleanup the first started, and the run could stay RUNNING. Only the first signal interrupts."""
    import signal

    proc, log, run = _training_under_way(store, synth_root, tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert log.read_text().splitlines()[-1] == "flowops.train: interrupted (signal 2)"
    final = MlflowClient(store).get_run(run.info.run_id)
    assert (final.info.status, final.data.tags["flowops.failure"]) == ("FAILED", "interrupted (signal 2)")


def test_the_model_learns(store, tmp_path):
    """About 30 s on two CPU cores: 120 synthetic images, 6 epochs at 64 px.

    Predicting background everywhere scores val_miou 0 (every category's IoU is 0 and background
    is not in the mean), so a model that learned nothing, trained with a broken loss, or learned
    shifted labels stays near 0. This one reaches about 0.69 here; the bar is 0.45.
    """
    from flowops.segmentation.data.synth import generate
    from flowops.segmentation.evaluation import split_metrics

    generate(tmp_path / "data", images=120, width=96, height=72, seed=5)
    spec = tiny_spec(
        tmp_path / "data",
        name="learns",
        experiment_name="learning",
        image_size=64,
        epochs=6,
        batch_size=8,
        learning_rate=0.002,
        max_batches_per_epoch=None,  # every batch: this test is about learning
    )
    proc = flowops("train", str(write_experiment(tmp_path, spec)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("learning").experiment_id])
    metrics = run.data.metrics
    assert metrics["val_miou"] > 0.45, metrics
    assert all(metrics[f"val_iou.{c}"] > 0.2 for c in spec["categories"]), metrics
    # The number is the one the stored per-image matrices give, and it is sensitive to the labels:
    # the same predictions against truth shifted by one class score near 0.
    path = client.download_artifacts(run.info.run_id, "evaluation/confusion.npz", str(tmp_path))
    with np.load(path) as data:
        confusion, classes = data["confusion"], [str(c) for c in data["class_names"]]
    assert len(confusion) == int(run.data.tags["flowops.eval_images"]) > 0
    assert split_metrics(confusion, classes)["val_miou"] == pytest.approx(metrics["val_miou"])
    shifted = np.roll(confusion, 1, axis=1)  # truth class i read as class i+1
    assert split_metrics(shifted, classes)["val_miou"] < 0.2


def test_the_holder_is_scored_on_the_candidates_own_data(two_runs, tmp_path):
    """Production was trained on one dataset, the candidate on another: no number of theirs compares,
    so the candidate's training scores production's model on the candidate's validation images."""
    import yaml

    from flowops.segmentation.data.synth import generate

    uri, _, spec, _ = two_runs
    mlflow.set_tracking_uri(uri)  # a models:/ source is resolved through the process's tracking URI
    client = MlflowClient(uri)
    production = finished_runs(uri)[0]
    model_id = production.outputs.model_outputs[0].model_id
    client.create_registered_model("holders-model")
    mv = client.create_model_version(
        "holders-model", f"models:/{model_id}", run_id=production.info.run_id, model_id=model_id
    )
    client.set_registered_model_alias("holders-model", "production", mv.version)
    policy = tmp_path / "registry_policy.yaml"
    policy.write_text(yaml.safe_dump({"model_name": "holders-model", "require_same_code": False,
                                      "targets": {"production": {"improve": {"absolute": 0.0, "confidence": 0.9}}}}))  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = tmp_path / "holders"
    proc = flowops("holders", "export", "--out", str(out), "--policy", str(policy), env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == f"wrote {out}: production v{mv.version}", proc.stderr
    forked = flowops("holders", "export", "--out", str(tmp_path / "fork"), "--fork", "--policy", str(policy), env=env)
    assert forked.stdout.strip() == f"wrote {tmp_path / 'fork'}: none"  # the policy does not share with forks

    generate(tmp_path / "other", images=30, width=64, height=48, seed=12)  # other images: another eval set
    other = write_experiment(tmp_path, {**spec, "name": "other-data", "dataset": {"root": str(tmp_path / "other")}})
    proc = flowops("train", str(other), "--holders", str(out), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cand,) = [r for r in finished_runs(uri) if r.info.run_name == "other-data"]
    tags, metrics = cand.data.tags, cand.data.metrics
    assert tags["flowops.eval_set"] != production.data.tags["flowops.eval_set"]
    assert tags["flowops.holder.production"] == "scored"
    assert tags["flowops.holder.production.run_id"] == production.info.run_id
    assert 0.0 <= metrics["holder.production.val_miou"] <= 1.0
    # the report compares them on the candidate's data, with a paired interval
    report = flowops(
        "report", "--run", cand.info.run_id, "--out", str(tmp_path / "r"), "--policy", str(policy), env=env
    )
    assert report.returncode == 0, report.stderr
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    row = data["aliases"]["production"]
    assert row["same_eval_set"] is True and row["holder"]["scored_by_candidate"] is True
    cell = row["metrics"]["val_miou"]
    assert cell["holder"] == pytest.approx(metrics["holder.production.val_miou"])
    assert cell["ci_low"] is not None and cell["ci_low"] <= cell["delta"] <= cell["ci_high"]
