"""The MLproject entry point (`python -m flowops.train --name ... --epochs ...` runs `main`).

It rebuilds the ExperimentSpec from the MLproject parameters (same validation, same
sha256 as the YAML file), checks the data before any training, trains, and records
everything a later reader needs: params, per-epoch metrics, per-class IoU, lineage tags,
plots, and the model as a pyfunc that serves exactly as it was evaluated.
Whatever goes wrong, the run ends FAILED with the reason in the `flowops.failure` tag.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from flowops.errors import FlowopsError
from flowops.spec.experiment import ExperimentSpec
from flowops.spec.params import parse_args, spec_to_params
from flowops.tracking import FAILURE_TAG
from flowops.training import distribute
from flowops.training.precision import MIXED_PRECISION_ENV, check_precision_setting
from flowops.training.workers import WORKERS_ENV, worker_main, workers_main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        spec, experiment_file = parse_args(args)
        check_precision_setting(os.environ.get(MIXED_PRECISION_ENV))
        workers = check_distribution()
        place = distribute.cluster()
    except FlowopsError as exc:
        return _fail_before_start(str(exc))
    if workers > 1:
        return workers_main(spec, args, workers)
    if not place.chief:
        return worker_main(spec, place)
    import mlflow

    from flowops import tracking

    uri = tracking.use()
    run = mlflow.active_run() or _start(mlflow, spec, uri)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a cancelled job ends FAILED, not RUNNING
    try:
        train(spec, experiment_file, run)
    except BaseException as exc:
        reason = describe(exc)
        mlflow.set_tag(FAILURE_TAG, reason)
        mlflow.end_run("FAILED")
        print(f"flowops.train: {reason}", file=sys.stderr)
        if not isinstance(exc, (FlowopsError, KeyboardInterrupt)):
            import traceback

            traceback.print_exc()
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    mlflow.end_run("FINISHED")
    print(f"flowops.train: run {run.info.run_id} finished; {tracking.ui_hint(uri, run)}")
    return 0


def check_distribution() -> int:
    """FLOWOPS_WORKERS (processes to start here) and FLOWOPS_CPU_REPLICAS, checked; the worker count."""
    from flowops.tfenv import cpu_replicas

    try:
        cpu_replicas()
    except ValueError as exc:
        raise FlowopsError(str(exc)) from None
    value = os.environ.get(WORKERS_ENV, "1").strip() or "1"
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise FlowopsError(f"{WORKERS_ENV}={value!r}: must be a whole number of workers from 1 to 64")
    if int(value) > 1 and ("TF_CONFIG" in os.environ or distribute.WORKER_HOSTS_ENV in os.environ):
        raise FlowopsError(f"{WORKERS_ENV} starts workers on this machine: unset it where TF_CONFIG places this one")
    return int(value)


def _start(mlflow, spec: ExperimentSpec, uri: str):
    """Run directly (not through `mlflow run`): create the run ourselves."""
    from flowops import tracking

    experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
    return mlflow.start_run(experiment_id=experiment_id, run_name=spec.name)


def _fail_before_start(reason: str) -> int:
    """Bad parameters: if `mlflow run` already created a run, end it FAILED with the reason."""
    print(f"flowops.train: {reason}", file=sys.stderr)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        client.set_tag(run_id, FAILURE_TAG, reason)
        client.set_terminated(run_id, "FAILED")
    return 1


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def describe(exc: BaseException) -> str:
    """One line saying why training stopped."""
    if isinstance(exc, FlowopsError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted" + (f" ({exc})" if str(exc) else "")
    name = type(exc).__name__
    if name == "ResourceExhaustedError" or isinstance(exc, MemoryError):
        return "out of memory: lower batch_size or image_size"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    marker = "/mlflow-artifacts/artifacts/"
    if marker in first:  # the server could not write to its artifact store (SFTP down, disk full, ...)
        path = first.split(marker, 1)[1].split()[0].split("/artifacts/", 1)[-1]
        return f"could not store artifact {path} on the tracking server (its artifact store failed or is down)"
    return f"{name}: {first}"[:500]


def train(spec: ExperimentSpec, experiment_file: str, run) -> None:
    import mlflow

    from flowops.data.cache import load_split
    from flowops.data.coco import open_split
    from flowops.data.fingerprint import dataset_fingerprint
    from flowops.gitops.lineage import run_tags
    from flowops.training.fit import evaluate_and_log, fit, log_model

    client = mlflow.tracking.MlflowClient()
    mlflow.set_tag("mlflow.runName", spec.name)
    logged = client.get_run(run.info.run_id).data.params
    # `mlflow run` has logged the parameters it was given; add the rest of the resolved spec.
    mlflow.log_params({k: v for k, v in spec_to_params(spec).items() if k not in logged})
    mlflow.log_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
    if experiment_file and Path(experiment_file).is_file():
        mlflow.log_artifact(experiment_file, "experiment")

    # The data is checked completely before any model is built.
    splits = {name: open_split(spec, name) for name in ("train", "val")}
    cached = {name: load_split(split, spec.categories, spec.image_size) for name, split in splits.items()}
    for split in splits.values():
        for note in split.notes:
            print(f"flowops.train: {note}", file=sys.stderr)
    fingerprint = dataset_fingerprint({name: c.source for name, c in cached.items()})
    mlflow.set_tags(run_tags(spec.sha256(), experiment_file, fingerprint))
    decoded = hashlib.sha256((cached["train"].content + cached["val"].content).encode()).hexdigest()
    mlflow.set_tag("flowops.decoded_sha256", decoded)  # the arrays trained on, whatever the cache held
    skipped = cached["train"].skipped + cached["val"].skipped
    dropped = cached["train"].skipped_annotations + cached["val"].skipped_annotations
    mlflow.set_tags(
        {
            "flowops.images_train": str(len(cached["train"].file_names)),
            "flowops.images_val": str(len(cached["val"].file_names)),
            "flowops.images_skipped": str(len(skipped)),
            "flowops.skipped_annotations": str(len(dropped)),
            "flowops.cache": "hit" if cached["train"].hit else "built",
            "flowops.preprocess": cached["val"].preprocess,  # the served model shrinks its input the same way
        }
    )
    if dropped:
        mlflow.log_text("\n".join(dropped) + "\n", "data/skipped_annotations.txt")
    if skipped:
        mlflow.log_text("\n".join(skipped) + "\n", "data/skipped_images.txt")
        print(
            f"flowops.train: skipped {len(skipped)} unreadable image(s); see data/skipped_images.txt", file=sys.stderr
        )

    model, history = fit(spec, cached)
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_and_log(spec, model, history, cached["val"], Path(tmp))
        log_model(spec, model, Path(tmp), cached["val"].preprocess)
