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
import sys
import tempfile
from pathlib import Path

import yaml

from flowops import cancel, tracking
from flowops.cancel import InterruptOnce
from flowops.errors import FlowopsError
from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.params import parse_args, spec_to_params
from flowops.segmentation.training import distribute
from flowops.segmentation.training.failure import describe
from flowops.segmentation.training.precision import MIXED_PRECISION_ENV, check_precision_setting
from flowops.segmentation.training.workers import WORKERS_ENV, worker_main, workers_main


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

    uri = tracking.use()
    tracking.bounded_http(training=True)  # the waits flowops train set, and a line per retry
    # Before the run exists, so no signal finds a run without its handler (a cancelled job ends
    # FAILED, not RUNNING); SIGINT and SIGTERM alike, and only the first one interrupts.
    InterruptOnce().install()
    try:
        run = mlflow.active_run() or _start(mlflow, spec, uri)
    except BaseException as exc:  # the tracking server does not answer, or a signal came first
        started = mlflow.active_run()
        if started is not None:  # the run exists already: it ends FAILED like any other
            _end_failed(mlflow, started.info.run_id, describe(exc))
        if isinstance(exc, KeyboardInterrupt):
            print(f"flowops.train: {describe(exc)}", file=sys.stderr)
            return 130
        print(f"flowops.train: could not start the run on the tracking server: {describe(exc)}", file=sys.stderr)
        return 1
    try:
        train(spec, experiment_file, run)
    except BaseException as exc:
        cancel.stopping()  # a signal from here on must not cut short ending the run
        import gc
        import traceback

        reason = describe(exc)
        unexpected = not isinstance(exc, (FlowopsError, KeyboardInterrupt)) and not _from_tracking(exc)
        shown = traceback.format_exc() if unexpected else ""
        # A signal can interrupt a write to the tracking store mid-transaction: its session lives on in
        # the traceback's frames, and on SQLite it holds the database lock that ending the run needs.
        traceback.clear_frames(exc.__traceback__)
        gc.collect()
        recorded = _end_failed(mlflow, run.info.run_id, reason)
        print(f"flowops.train: {reason}{recorded}", file=sys.stderr)
        if shown:
            print(shown, file=sys.stderr, end="")  # an unexpected error: its traceback helps whoever fixes it
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        if place.workers > 1:  # TensorFlow's exit waits for the other workers, which are being stopped
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    try:
        mlflow.end_run("FINISHED")
    except Exception as exc:
        print(f"flowops.train: trained, but could not end run {run.info.run_id}: {describe(exc)}", file=sys.stderr)
        return 1
    print(f"flowops.train: run {run.info.run_id} finished; {tracking.ui_hint(uri, run)}")
    return 0


def _end_failed(mlflow, run_id: str, reason: str) -> str:
    """End the active run FAILED, then tag the reason (tracking.end_failed); '' when both were
    recorded, else what was not. The fluent end comes first: it pops the run, so nothing ends it
    FINISHED at exit."""
    from mlflow.tracking import MlflowClient

    try:
        mlflow.end_run("FAILED")
    except Exception as exc:
        if "database is locked" not in str(exc):
            return f" (the tracking server did not answer, so run {run_id} may still show RUNNING: {describe(exc)})"
        # another writer of the SQLite store held it past its wait: once more, by the run's id
        return tracking.end_failed(MlflowClient(), run_id, reason)
    return tracking.end_failed(MlflowClient(), run_id, reason, ended=True)


def _from_tracking(exc: BaseException) -> bool:
    """An error of the tracking server or of reaching it (a traceback would say nothing more)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, ConnectionError, TimeoutError)) or type(exc).__module__.startswith(
        ("requests", "urllib3")
    )


def check_distribution() -> int:
    """FLOWOPS_TRAIN_WORKERS (processes to start here) and FLOWOPS_CPU_REPLICAS, checked; the worker count."""
    from flowops.segmentation.tfenv import cpu_replicas

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
    """The run to train into: the one `flowops train` created (MLFLOW_RUN_ID), else a new one.

    `mlflow run .` creates its run before this code runs: in its --experiment-name (the
    Default experiment unless one is given), with the parameters shell-quoted ('traffic
    light,stop sign' stored with its quotes). Such a run is replaced by one that records the
    spec's values, in the experiment `mlflow run` was told, else the spec's `experiment_name`;
    the placeholder is ended KILLED and points at the real run (`flowops.moved_to`).
    """
    from mlflow.tracking import MlflowClient

    from flowops import tracking

    experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
    given = os.environ.get("MLFLOW_RUN_ID")
    if given:
        client = MlflowClient()
        placeholder = client.get_run(given)
        logged = placeholder.data.params
        # (an empty value shows as '' there: a blemish, not a different value, so not reason enough)
        wrong = [
            k for k, v in spec_to_params(spec).items() if k in logged and logged[k] not in (v, "''" if not v else v)
        ]
        default = placeholder.info.experiment_id == "0"  # MLflow's Default: no experiment was asked for
        if default or wrong:
            if not default:
                experiment_id = placeholder.info.experiment_id
            del os.environ["MLFLOW_RUN_ID"]
            kept = {
                k: v for k, v in placeholder.data.tags.items() if k.startswith(("mlflow.source.", "mlflow.project."))
            }
            run = mlflow.start_run(experiment_id=experiment_id, run_name=spec.name, tags=kept)
            note = f"flowops trained this as run {run.info.run_id}"
            client.set_tag(given, "flowops.moved_to", run.info.run_id)
            client.set_tag(given, "mlflow.note.content", note)
            client.set_terminated(given, "KILLED")  # (`mlflow run` marks it FINISHED when we return, whatever we say)
            why = "in the Default experiment"
            if wrong:
                why = f"parameters stored other than the experiment has them: {', '.join(wrong)}"
            print(
                f"flowops.train: mlflow run made run {given} ({why}); training as run {run.info.run_id}",
                file=sys.stderr,
            )
            return run
    return mlflow.start_run(experiment_id=experiment_id, run_name=spec.name)


def _fail_before_start(reason: str) -> int:
    """Bad parameters: if `mlflow run` already created a run, end it FAILED with the reason."""
    print(f"flowops.train: {reason}", file=sys.stderr)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from mlflow.tracking import MlflowClient

        not_recorded = tracking.end_failed(MlflowClient(), run_id, reason)
        if not_recorded:
            print(f"flowops.train: {not_recorded.strip()}", file=sys.stderr)
    return 1


def train(spec: ExperimentSpec, experiment_file: str, run) -> None:
    import mlflow

    from flowops.gitops.lineage import run_tags
    from flowops.segmentation.data import stream
    from flowops.segmentation.data.cache import CachedSplit, load_split
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.data.fingerprint import dataset_fingerprint
    from flowops.segmentation.training.fit import evaluate_and_log, fit, log_model

    client = mlflow.tracking.MlflowClient()
    mlflow.set_tag("mlflow.runName", spec.name)
    logged = client.get_run(run.info.run_id).data.params
    # `mlflow run` has logged the parameters it was given; add the rest of the resolved spec.
    params = spec_to_params(spec) | {"experiment_file": experiment_file or ""}
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})
    mlflow.log_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
    if experiment_file and Path(experiment_file).is_file():
        mlflow.log_artifact(experiment_file, "experiment")

    # The validation split is decoded (or verified) first; the training split is decoded while the
    # first epoch trains on it (flowops.segmentation.data.stream), and recorded once it is complete.
    splits = {name: open_split(spec, name) for name in ("train", "val")}
    for split in splits.values():
        for note in split.notes:
            print(f"flowops.train: {note}", file=sys.stderr)
    val = load_split(splits["val"], spec.categories, spec.image_size)
    building = stream.start(splits["train"], spec.categories, spec.image_size)
    cached = {"train": building, "val": val}

    def record_data(train: CachedSplit) -> None:
        complete = {"train": train, "val": val}
        fingerprint = dataset_fingerprint({name: c.source for name, c in complete.items()})
        mlflow.set_tags(run_tags(spec.sha256(), experiment_file, fingerprint))
        decoded = hashlib.sha256((train.content + val.content).encode()).hexdigest()
        mlflow.set_tag("flowops.decoded_sha256", decoded)  # the arrays trained on, whatever the cache held
        skipped = train.skipped + val.skipped
        dropped = [*splits["train"].orphans, *splits["val"].orphans, *train.skipped_annotations]
        dropped += val.skipped_annotations
        mlflow.set_tags(
            {
                "flowops.images_train": str(len(train.file_names)),
                "flowops.images_val": str(len(val.file_names)),
                "flowops.images_skipped": str(len(skipped)),
                "flowops.skipped_annotations": str(len(dropped)),
                "flowops.cache": "hit" if train.hit else "built",
                "flowops.preprocess": val.preprocess,  # the served model shrinks its input the same way
            }
        )
        if dropped:
            mlflow.log_text("\n".join(dropped) + "\n", "data/skipped_annotations.txt")
            print(
                f"flowops.train: skipped {len(dropped)} annotation(s) that cannot be drawn; see "
                "data/skipped_annotations.txt",
                file=sys.stderr,
            )
        if skipped:
            mlflow.log_text("\n".join(skipped) + "\n", "data/skipped_images.txt")
            print(
                f"flowops.train: skipped {len(skipped)} unreadable image(s); see data/skipped_images.txt",
                file=sys.stderr,
            )

    try:
        model, history = fit(spec, cached, on_data=record_data)
    finally:
        building.close()  # whatever failed first (the strategy, the model), the build stops with it
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_and_log(spec, model, history, val, Path(tmp))
        log_model(spec, model, Path(tmp), val.preprocess)
