"""A training run always ends, names one run only, lands where the spec says, and says why in one line:
with a tracking server that stops answering (a real `mlflow server` behind a fault proxy), through
`mlflow run .`, and without the virtual environment activated."""

from __future__ import annotations

import os
import subprocess
import sys

from mlflow.tracking import MlflowClient

from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.params import spec_to_params

from ..conftest import REPO
from .conftest import BIN, flowops, tiny_spec, write_experiment
from .faultproxy import FaultProxy


def env_for(uri: str, tmp_path, **extra) -> dict:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "FLOWOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        **extra,
    }


def test_a_failing_tag_call_still_ends_the_run_failed(server, synth_root, tmp_path):
    """The failure tag used to be written before the run was ended: when that call failed, the run
    stayed RUNNING forever and the user got chained tracebacks."""
    spec = ExperimentSpec.model_validate(tiny_spec(synth_root, name="tagless"))
    argv = [x for k, v in spec_to_params(spec).items() for x in (f"--{k}", v)]
    with FaultProxy(server) as proxy:
        proxy.faults = {"runs/set-tag": "500"}  # the first thing training does; and the failure tag
        proc = subprocess.run(
            [sys.executable, "-m", "flowops.train", *argv],
            cwd=REPO,
            env=env_for(proxy.uri, tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    client = MlflowClient(server)
    (run,) = client.search_runs([client.get_experiment_by_name("integration").experiment_id])
    assert run.info.status == "FAILED"
    assert proc.stderr.strip().splitlines()[-1].startswith("flowops.train: ")
    assert f"run {run.info.run_id} ended FAILED; its reason could not be tagged" in proc.stderr


def test_an_unreachable_server_still_gives_the_run_id_and_one_line(server, synth_root, tmp_path):
    path = write_experiment(tmp_path, tiny_spec(synth_root, name="unread"))
    with FaultProxy(server) as proxy:
        proxy.faults = {"runs/get": "500"}  # the server stops answering reads once the run exists
        proc = flowops("train", str(path), "--run-id-file", str(tmp_path / "run-id"), env=env_for(proxy.uri, tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    run_id = (tmp_path / "run-id").read_text().strip()
    (last,) = [line for line in proc.stderr.strip().splitlines() if "training unread failed" in line]
    # Ending a run makes MLflow's client read it first: with reads failing it cannot, and says so.
    assert f"(run {run_id})" in last and f"so run {run_id} may still show RUNNING" in last, last


def test_mlflow_run_lands_in_the_spec_experiment_with_the_values_as_given(store, synth_root, tmp_path):
    """`mlflow run .` creates its run in Default with shell-quoted parameters; the trainer moves to a
    run in the experiment the parameters name, with the values as typed, and ends the placeholder."""
    cmd = [
        str(BIN / "mlflow"),
        "run",
        str(REPO),
        "--env-manager",
        "local",
        "-P",
        "categories=person,car",
        "-P",
        "description=two words",
        "-P",
        "experiment_name=lands-here",
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
    (run,) = client.search_runs([client.get_experiment_by_name("lands-here").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["description"] == "two words"
    (placeholder,) = client.search_runs(["0"])  # MLflow's Default experiment
    # `mlflow run` marks its own run FINISHED at the end whatever it says (it compares the status
    # text with numbers); it stays, empty, pointing at the real one.
    assert placeholder.info.status != "RUNNING" and placeholder.data.tags["flowops.moved_to"] == run.info.run_id
    assert placeholder.data.params["description"] == "'two words'"  # what MLflow stored: why we moved


def test_coco_runs_log_the_paths_they_read(tmp_path):
    params = spec_to_params(ExperimentSpec.model_validate({"name": "c", "categories": ["person"]}))
    assert params["dataset"] == "coco" and params["train_annotations"] == "annotations/instances_train2017.json"
    assert params["val_images"] == "val2017"


def test_flowops_train_works_without_the_venv_activated(store, synth_root, tmp_path):
    """The MLproject runs the interpreter flowops runs in, not whichever `python` PATH finds."""
    path = write_experiment(tmp_path, tiny_spec(synth_root, name="bare"))
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no .venv/bin: the system python has no mlflow
    proc = flowops("train", str(path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
