"""Training proper: fit the model, evaluate it on the whole validation split, log the pyfunc."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowops import cancel
from flowops.errors import FlowopsError
from flowops.segmentation.experiment import ExperimentSpec
from flowops.segmentation.training.precision import MIXED_PRECISION_ENV

N_SAMPLES = 4  # fixed validation images shown in the sample-prediction figure and the report
PIP_REQUIREMENTS = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "segmentation-models==1.0.1",
    "pillow",
    "numpy",
    "mlflow>=3.17.2,<3.18",
]


def fit(spec: ExperimentSpec, cached, log: bool = True, on_data=None):
    """Train; (model, history). `log`: record on the active MLflow run (the chief of several workers).

    `cached["train"]` may be a `flowops.segmentation.data.stream.Building`: the first epoch then trains on its rows
    as they are decoded, and `on_data(train)` is called with the complete split once it is (after the
    first epoch; before training across workers, which must count their steps first).
    """
    from flowops.segmentation.tfenv import configure_tensorflow
    from flowops.segmentation.training import distribute
    from flowops.segmentation.training.model import build_model, float32_copy, training_model
    from flowops.segmentation.training.precision import precision_policy

    configure_tensorflow()
    import mlflow
    import tensorflow as tf
    import tf_keras

    from flowops.segmentation.data import stream

    strategy = distribute.strategy()  # the one strategy: first, before any other TensorFlow work
    cancel.reclaim_signals()  # across workers, TensorFlow's coordination service took SIGTERM for itself
    workers, replicas = distribute.cluster().workers, strategy.num_replicas_in_sync
    global_batch = spec.batch_size * replicas  # batch_size is per replica
    # Same spec and seed, same metrics (on CPU): seeded everything, deterministic kernels.
    tf_keras.utils.set_random_seed(spec.seed)
    tf.config.experimental.enable_op_determinism()
    policy = precision_policy(len(tf.config.list_physical_devices("GPU")), os.environ.get(MIXED_PRECISION_ENV))
    tf_keras.mixed_precision.set_global_policy(policy)
    if log:
        mlflow.set_tags(
            {
                "flowops.precision": policy,
                "flowops.replicas": str(replicas),
                "flowops.workers": str(workers),
                "flowops.global_batch_size": str(global_batch),
            }
        )
    n_classes = len(spec.class_names)
    train, val = cached["train"], cached["val"]
    building = train if isinstance(train, stream.Building) else stream.finished(train)
    model = build_model(
        spec.architecture, spec.backbone, n_classes, spec.image_size, spec.encoder_weights, strategy=strategy
    )
    trainer = training_model(
        model, n_classes, spec.learning_rate, augment=spec.augment, seed=spec.seed, strategy=strategy
    )
    callbacks = []
    if log:

        class LogEpoch(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                # The last epoch's val_loss is the whole split's, image by image (evaluate_and_log):
                # one value per epoch, and the run shows the one that does not depend on the batch.
                last = epoch + 1 == spec.epochs
                values = {k: float(v) for k, v in (logs or {}).items() if not (last and k == "val_loss")}
                mlflow.log_metrics(values, step=epoch + 1)

        class StopOnSignal(tf_keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                cancel.safe_point()  # a SIGINT/SIGTERM during the step stops training here

            on_test_batch_end = on_train_batch_end  # and between two validation batches

        callbacks += [LogEpoch(), StopOnSignal()]
    if workers == 1:  # (a build still running is stopped by its owner, flowops.segmentation.training.run.train)
        history = _fit_here(trainer, spec, building, val, global_batch, replicas, callbacks, on_data)
    else:
        train = building.result()
        if on_data is not None:
            on_data(train)
        with cancel.deferred():
            history = _fit_workers(trainer, spec, train, global_batch, callbacks).history
    # Evaluate and serve in float32, whatever the GPU trained in. Across workers, every worker
    # reads the weights (reading batch-norm statistics is a collective step) into a plain copy:
    # the chief evaluates and saves that, while the others have left.
    if policy != "float32" or workers > 1:
        tf_keras.mixed_precision.set_global_policy("float32")
        model = float32_copy(model, spec.architecture, spec.backbone, n_classes, spec.image_size)
    return model, history


def _fit_here(trainer, spec: ExperimentSpec, building, val, global_batch: int, replicas: int, callbacks, on_data):
    """fit() on this machine's replicas: the first epoch from the entry as it is built, the rest from
    the whole entry (in memory when it fits). Keras splits each global batch over the replicas."""
    from flowops.segmentation.data.pipeline import first_epoch_dataset, make_dataset

    # Over several replicas, whole batches only: a short last batch leaves a replica an empty
    # one, which the fused batch normalisation rejects. The validation split is scored in full
    # after training either way (evaluate_and_log); per-epoch val_* then leave out the rest.
    whole = replicas > 1
    if whole and (count := len(building.result().images)) < global_batch:  # (counted first: the whole entry)
        raise FlowopsError(_too_few(count, spec.batch_size, replicas))
    val_ds = make_dataset(val.images, val.masks, global_batch, training=False, seed=spec.seed, whole_batches=whole)
    validation = val_ds if len(val.images) >= global_batch or not whole else None
    batches: dict[str, Any] = {
        "training": True,
        "seed": spec.seed,
        "max_batches": spec.max_batches_per_epoch,
        "whole_batches": whole,
    }
    first = first_epoch_dataset(building, spec.image_size, global_batch, **batches)
    with cancel.deferred():
        try:
            history = trainer.fit(first, validation_data=validation, epochs=1, callbacks=callbacks, verbose=2).history
        except Exception:
            failure = building.failure()  # the build's own error (unreadable images ...), not TensorFlow's wrapping
            if failure is not None:
                raise failure from None
            raise
    train = building.result()
    if on_data is not None:
        on_data(train)
    if spec.epochs > 1:
        train_ds = make_dataset(train.images, train.masks, global_batch, **batches)
        with cancel.deferred():
            later = trainer.fit(
                train_ds,
                validation_data=validation,
                initial_epoch=1,
                epochs=spec.epochs,
                callbacks=callbacks,
                verbose=2,
            ).history
        history = {key: history.get(key, []) + later.get(key, []) for key in dict.fromkeys([*history, *later])}
    return history


def _fit_workers(trainer, spec: ExperimentSpec, train, global_batch: int, callbacks: list):
    """fit() across workers: each reads its own shard of the same seeded order, in equal whole steps.

    Every worker must run the same number of steps (a step is a collective all-reduce), so the
    shards are cut to equal lengths and partial batches dropped. The validation split is scored
    once, by the chief, after training (evaluate_and_log), not per epoch.
    """
    import tf_keras

    from flowops.segmentation.data.pipeline import make_dataset

    def dataset(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        shard = (context.input_pipeline_id, context.num_input_pipelines)
        return make_dataset(train.images, train.masks, per_replica, training=True, seed=spec.seed, shard=shard)

    steps = len(train.images) // global_batch
    if spec.max_batches_per_epoch:
        steps = min(steps, spec.max_batches_per_epoch)
    if steps == 0:
        raise FlowopsError(_too_few(len(train.images), spec.batch_size, global_batch // spec.batch_size))
    creator = tf_keras.utils.experimental.DatasetCreator(dataset)
    verbose = 2 if callbacks else 0  # the chief (the one logging) shows progress
    return trainer.fit(creator, epochs=spec.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=verbose)


def _too_few(images: int, batch_size: int, replicas: int) -> str:
    return (
        f"{images} training images make no global batch of {batch_size * replicas} "
        f"(batch_size {batch_size} x {replicas} replicas): lower batch_size"
    )


def evaluate_and_log(spec: ExperimentSpec, model, history: dict, val, tmp: Path) -> None:
    """Dataset-level validation metrics from per-image confusion matrices (stored for later
    comparisons), the evaluation set's identity, learning curves and sample predictions."""
    import mlflow
    import numpy as np

    from flowops import plots
    from flowops.segmentation import evaluation
    from flowops.segmentation import plots as segmentation_plots
    from flowops.segmentation.pyfunc import predict_masks
    from flowops.segmentation.training.holders import score_holders
    from flowops.segmentation.training.model import inference_function, per_image_loss

    n_classes = len(spec.class_names)
    forward = inference_function(model)  # the same forward pass the served model uses
    image_loss = per_image_loss(n_classes)
    predicted, losses = [], []
    for i in range(0, len(val.images), 16):
        softmax = forward(val.images[i : i + 16])
        predicted.append(np.argmax(softmax, -1).astype(np.uint8))
        losses.append(image_loss(np.asarray(val.masks[i : i + 16]), softmax))
    confusion = evaluation.confusion_per_image(
        np.asarray(val.masks), np.concatenate(predicted), n_classes, val.file_names
    )
    eval_set = evaluation.eval_set_id(val.content, spec.class_names, spec.image_size)
    mlflow.log_metrics(evaluation.split_metrics(confusion, spec.class_names))
    # val_loss of the whole split, image by image: the same for any batch size, replica or worker
    # count (Keras's per-epoch val_loss is over batches, and absent when a replica would get none);
    # the last epoch's value (LogEpoch leaves that step to it), so it is the value the run shows.
    per_image = np.concatenate(losses)
    mlflow.log_metric("val_loss", float(per_image.mean()), step=spec.epochs)
    mlflow.set_tags({"flowops.eval_set": eval_set, "flowops.eval_images": str(len(confusion))})
    np.savez_compressed(
        tmp / "confusion.npz",
        confusion=confusion,
        file_names=np.array(val.file_names),
        class_names=np.array(spec.class_names),
        eval_set=np.array(eval_set),
    )
    mlflow.log_artifact(str(tmp / "confusion.npz"), "evaluation")
    np.savez_compressed(tmp / "per_example.npz", ids=np.array(val.file_names), val_loss=per_image)
    mlflow.log_artifact(str(tmp / "per_example.npz"), "evaluation")
    score_holders(spec, val, eval_set, tmp)  # the models in service, on these same images

    plots.learning_curves({spec.name: history}, tmp / "learning_curves.png", ("iou", "loss"))
    mlflow.log_artifact(str(tmp / "learning_curves.png"), "plots")
    images = list(val.images[:N_SAMPLES])
    masks = predict_masks(forward, images, spec.image_size)
    rows = [[im, truth, pred] for im, truth, pred in zip(images, val.masks[:N_SAMPLES], masks, strict=False)]
    segmentation_plots.mask_grid(
        rows, ["image", "truth", "prediction"], n_classes, spec.class_names, tmp / "sample_predictions.png"
    )
    mlflow.log_artifact(str(tmp / "sample_predictions.png"), "plots")
    # The arrays, so a report can redraw them next to another model's without TensorFlow.
    np.savez_compressed(
        tmp / "samples.npz",
        file_names=np.array(val.file_names[:N_SAMPLES]),
        images=np.stack(images),
        truth=val.masks[:N_SAMPLES],
        predicted=np.stack(masks),
        class_names=np.array(spec.class_names),
    )
    mlflow.log_artifact(str(tmp / "samples.npz"), "samples")


def log_model(spec: ExperimentSpec, model, tmp: Path, preprocess: str) -> None:
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    import flowops
    from flowops.segmentation.pyfunc import META_FILE, SegmentationModel

    # HDF5, not .keras: tf-keras reads a .keras zip through TensorFlow's file layer one seek at
    # a time (about 45 s for a ResNet-18 Unet on 2 cores); the same model loads from HDF5 in ~1 s.
    keras_path = tmp / "model.h5"
    model.save(keras_path)
    meta = {
        "class_names": spec.class_names,
        "image_size": spec.image_size,
        "architecture": spec.architecture,
        "backbone": spec.backbone,
        "spec_sha256": spec.sha256(),
        "preprocess": preprocess,  # flowops.segmentation.preprocess: how the served model shrinks its input
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    # Images of any size: (-1, -1, -1, 3) uint8 in, (-1, -1, -1) uint8 class indices out.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
    )
    mlflow.pyfunc.log_model(
        name="model",
        python_model=SegmentationModel(),
        artifacts={"keras_model": str(keras_path), "meta": str(tmp / META_FILE)},
        signature=signature,
        code_paths=[str(Path(flowops.__file__).parent)],  # the model needs only flowops, not a checkout
        pip_requirements=PIP_REQUIREMENTS,  # explicit: inferring them would load the model in a subprocess
    )
