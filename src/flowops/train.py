"""The MLproject entry point: `python -m flowops.train --name ... --epochs ...`.

It rebuilds the ExperimentSpec from the MLproject parameters (same validation, same
sha256 as the YAML file), checks the data before any training, trains, and records
everything a later reader needs: params, per-epoch metrics, per-class IoU, lineage tags,
plots, and the model as a pyfunc that serves exactly as it was evaluated.
Whatever goes wrong, the run ends FAILED with the reason in the `flowops.failure` tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from flowops.errors import FlowopsError
from flowops.model import MIXED_PRECISION_ENV, check_precision_setting
from flowops.params import parse_args, spec_to_params
from flowops.spec import ExperimentSpec

FAILURE_TAG = "flowops.failure"
N_SAMPLES = 4  # fixed validation images shown in the sample-prediction figure and the report
PIP_REQUIREMENTS = ["tensorflow==2.21.0", "tf-keras==2.21.0", "segmentation-models==1.0.1", "pillow", "numpy", "mlflow>=3.17.2,<3.18"]


def main(argv: list[str] | None = None) -> int:
    try:
        spec, experiment_file = parse_args(sys.argv[1:] if argv is None else argv)
        check_precision_setting(os.environ.get(MIXED_PRECISION_ENV))
    except FlowopsError as exc:
        return _fail_before_start(str(exc))
    import mlflow

    from flowops import tracking

    uri = tracking.use()
    run = mlflow.active_run() or _start(mlflow, spec, uri)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # a cancelled job ends FAILED, not RUNNING
    try:
        train(spec, experiment_file, run)
    except BaseException as exc:  # noqa: BLE001 - every failure must end the run
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
    from flowops.lineage import run_tags

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
    fingerprint = hashlib.sha256((cached["train"].fingerprint + cached["val"].fingerprint).encode()).hexdigest()
    mlflow.set_tags(run_tags(spec.sha256(), experiment_file, fingerprint))
    skipped = cached["train"].skipped + cached["val"].skipped
    mlflow.set_tags({"flowops.images_train": str(len(cached["train"].file_names)), "flowops.images_val": str(len(cached["val"].file_names)),
                     "flowops.images_skipped": str(len(skipped)), "flowops.cache": "hit" if cached["train"].hit else "built"})  # fmt: skip
    if skipped:
        mlflow.log_text("\n".join(skipped) + "\n", "data/skipped_images.txt")
        print(f"flowops.train: skipped {len(skipped)} unreadable image(s); see data/skipped_images.txt", file=sys.stderr)

    model, history = fit(spec, cached)
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_and_log(spec, model, history, cached["val"], Path(tmp))
        log_model(spec, model, Path(tmp))


def fit(spec: ExperimentSpec, cached):
    from flowops.model import build_model, configure_tensorflow, float32_copy, precision_policy, training_model

    configure_tensorflow()
    import mlflow
    import tensorflow as tf
    import tf_keras

    from flowops.data.pipeline import make_dataset

    # Same spec and seed, same metrics (on CPU): seeded everything, deterministic kernels.
    tf_keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    policy = precision_policy(len(tf.config.list_physical_devices("GPU")), os.environ.get(MIXED_PRECISION_ENV))
    tf_keras.mixed_precision.set_global_policy(policy)
    mlflow.set_tag("flowops.precision", policy)
    n_classes = len(spec.class_names)
    train_ds = make_dataset(cached["train"].images, cached["train"].masks, spec.batch_size, training=True, seed=spec.seed,
                            max_batches=spec.max_batches_per_epoch)  # fmt: skip
    val_ds = make_dataset(cached["val"].images, cached["val"].masks, spec.batch_size, training=False, seed=spec.seed)
    model = build_model(spec.architecture, spec.backbone, n_classes, spec.image_size, spec.encoder_weights)
    trainer = training_model(model, n_classes, spec.learning_rate, augment=spec.augment, seed=spec.seed)

    class LogEpoch(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    history = trainer.fit(train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=[LogEpoch()], verbose=2)
    if policy != "float32":  # evaluate and serve in float32, whatever the GPU trained in
        tf_keras.mixed_precision.set_global_policy("float32")
        model = float32_copy(model, spec.architecture, spec.backbone, n_classes, spec.image_size)
    return model, history.history


def evaluate_and_log(spec: ExperimentSpec, model, history: dict, val, tmp: Path) -> None:
    """Per-class validation IoU, learning curves, sample predictions (figure and arrays)."""
    import mlflow
    import numpy as np

    from flowops import plots
    from flowops.model import inference_function, per_class_iou
    from flowops.pyfunc import predict_masks

    n_classes = len(spec.class_names)
    forward = inference_function(model)  # the same forward pass the served model uses
    predicted = np.concatenate([np.argmax(forward(val.images[i : i + 16]), -1) for i in range(0, len(val.images), 16)]).astype(np.uint8)
    ious = per_class_iou(val.masks, predicted, n_classes)
    final = {f"val_iou.{name}": float(v) for name, v in zip(spec.class_names, ious) if not np.isnan(v)}
    final["val_miou"] = float(np.nanmean(ious))
    mlflow.log_metrics(final)

    plots.learning_curves({spec.name: history}, tmp / "learning_curves.png")
    mlflow.log_artifact(str(tmp / "learning_curves.png"), "plots")
    images = list(val.images[:N_SAMPLES])
    masks = predict_masks(forward, images, spec.image_size)
    rows = [[im, truth, pred] for im, truth, pred in zip(images, val.masks[:N_SAMPLES], masks)]
    plots.mask_grid(rows, ["image", "truth", "prediction"], n_classes, spec.class_names, tmp / "sample_predictions.png")
    mlflow.log_artifact(str(tmp / "sample_predictions.png"), "plots")
    # The arrays, so a report can redraw them next to another model's without TensorFlow.
    np.savez_compressed(tmp / "samples.npz", file_names=np.array(val.file_names[:N_SAMPLES]), images=np.stack(images),
                        truth=val.masks[:N_SAMPLES], predicted=np.stack(masks), class_names=np.array(spec.class_names))  # fmt: skip
    mlflow.log_artifact(str(tmp / "samples.npz"), "samples")


def log_model(spec: ExperimentSpec, model, tmp: Path) -> None:
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    import flowops
    from flowops.pyfunc import META_FILE, SegmentationModel

    # HDF5, not .keras: tf-keras reads a .keras zip through TensorFlow's file layer one seek at
    # a time (about 45 s for a ResNet-18 Unet on 2 cores); the same model loads from HDF5 in ~1 s.
    keras_path = tmp / "model.h5"
    model.save(keras_path)
    meta = {"class_names": spec.class_names, "image_size": spec.image_size, "architecture": spec.architecture,
            "backbone": spec.backbone, "spec_sha256": spec.sha256()}  # fmt: skip
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    # Images of any size: (-1, -1, -1, 3) uint8 in, (-1, -1, -1) uint8 class indices out.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]), outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))])
    )
    mlflow.pyfunc.log_model(
        name="model",
        python_model=SegmentationModel(),
        artifacts={"keras_model": str(keras_path), "meta": str(tmp / META_FILE)},
        signature=signature,
        code_paths=[str(Path(flowops.__file__).parent)],  # the model needs only flowops, not a checkout
        pip_requirements=PIP_REQUIREMENTS,  # explicit: inferring them would load the model in a subprocess
    )


if __name__ == "__main__":
    sys.exit(main())
