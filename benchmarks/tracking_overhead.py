"""Tracking overhead: the same tiny training with and without MLflow logging (target ratio <= 1.02).

    .venv/bin/python benchmarks/tracking_overhead.py [--reps 5]

Unet/resnet18 at 64 px on the demo data, 4 epochs; "with" logs every epoch's metrics to a
SQLite store exactly as the trainer's callback does. Medians of --reps runs each, in ABBA
order (without, with, with, without, ...) so that neither side always runs first on a busy
machine. The time spent inside MLflow calls is also summed: on two shared cores it measures
the overhead more precisely than the difference of two ~15 s wall times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["FLOWOPS_CACHE_DIR"] = str(tmp / "cache")
    from flowops.segmentation.data.cache import load_split
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.data.synth import generate
    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.segmentation.tfenv import configure_tensorflow
    from flowops.segmentation.training.model import build_model, training_model

    configure_tensorflow()
    import mlflow
    import tf_keras

    from flowops.segmentation.data.pipeline import make_dataset

    data = ROOT / "data" / "synth"
    if not (data / "annotations" / "instances_val.json").exists():
        generate(data)
    spec = ExperimentSpec.model_validate(
        {
            "name": "o",
            "categories": ["person", "car", "dog"],
            "image_size": 64,
            "epochs": 4,
            "dataset": {"root": str(data)},
        }
    )
    cached = {s: load_split(open_split(spec, s), spec.categories, 64) for s in ("train", "val")}
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlruns.db'}")

    in_mlflow = []  # seconds inside log_metrics, per tracked run

    class LogEpoch(tf_keras.callbacks.Callback):  # the trainer's callback, timed
        def on_epoch_end(self, epoch, logs=None):
            start = time.perf_counter()
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)
            in_mlflow[-1] += time.perf_counter() - start

    def once(track: bool) -> float:
        tf_keras.utils.set_random_seed(0)
        train = make_dataset(cached["train"].images, cached["train"].masks, 8, training=True, seed=0)
        val = make_dataset(cached["val"].images, cached["val"].masks, 8, training=False, seed=0)
        trainer = training_model(build_model("Unet", "resnet18", 4, 64, None), 4, 1e-3, augment=True, seed=0)
        # The run exists before fit() in the trainer too (created by mlflow run): time fit() only.
        run = mlflow.start_run() if track else None
        in_mlflow.append(0.0)
        start = time.perf_counter()
        trainer.fit(train, validation_data=val, epochs=spec.epochs, callbacks=[LogEpoch()] if track else [], verbose=0)
        elapsed = time.perf_counter() - start
        if run:
            mlflow.end_run()
        return elapsed

    once(False)  # warm-up: graph building and caches
    once(True)  # warm-up: the store's schema is created on first use
    with_, without, logging = [], [], []
    for rep in range(args.reps):
        for track in (False, True) if rep % 2 == 0 else (True, False):
            (with_ if track else without).append(once(track))
            if track:
                logging.append(in_mlflow[-1])
    ratio = statistics.median(with_) / statistics.median(without)
    pairs = sorted(
        w / o for w, o in zip(with_, without, strict=False)
    )  # the spread says how much of the ratio is noise
    share = statistics.median(logging) / statistics.median(without)
    row = (
        f"| 4 epochs, Unet/resnet18, 64 px | {statistics.median(without):.2f} s | {statistics.median(with_):.2f} s | "
        f"{ratio:.3f} (pairs {pairs[0]:.2f}-{pairs[-1]:.2f}) | {statistics.median(logging) * 1000:.0f} ms = "
        f"{share:.2%} |"
    )
    print(row)
    sys.path.insert(0, str(Path(__file__).parent))
    from results import record

    record(
        "Tracking overhead",
        [
            f"Medians of {args.reps} runs each in ABBA order, SQLite store; target ratio <= 1.02.",
            "",
            "| training | without tracking | with tracking | wall-time ratio | time inside MLflow calls |",
            "|---|---|---|---|---|",
            row,
        ],
        "`.venv/bin/python benchmarks/tracking_overhead.py`",
    )


if __name__ == "__main__":
    main()
