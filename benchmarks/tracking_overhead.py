"""Tracking overhead: the same tiny training with and without MLflow logging (target ratio <= 1.02).

    .venv/bin/python benchmarks/tracking_overhead.py [--reps 3]

Unet/resnet18 at 64 px on the demo data, 4 epochs; "with" logs every epoch's metrics to a
SQLite store exactly as the trainer's callback does. Medians of --reps runs each, alternating.
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
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["FLOWOPS_CACHE_DIR"] = str(tmp / "cache")
    from flowops.data.cache import load_split
    from flowops.data.coco import open_split
    from flowops.data.synth import generate
    from flowops.model import build_model, configure_tensorflow
    from flowops.spec import ExperimentSpec

    configure_tensorflow()
    import mlflow
    import tf_keras

    from flowops.data.pipeline import make_dataset

    data = ROOT / "data" / "synth"
    if not (data / "annotations" / "instances_val.json").exists():
        generate(data)
    spec = ExperimentSpec.model_validate({"name": "o", "categories": ["person", "car", "dog"], "image_size": 64, "epochs": 4, "dataset": {"root": str(data)}})
    cached = {s: load_split(open_split(spec, s), spec.categories, 64) for s in ("train", "val")}
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlruns.db'}")

    class LogEpoch(tf_keras.callbacks.Callback):  # the trainer's callback
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    def once(track: bool) -> float:
        tf_keras.utils.set_random_seed(0)
        train = make_dataset(cached["train"].images, cached["train"].masks, 4, 8, training=True, augment_images=True, seed=0)
        val = make_dataset(cached["val"].images, cached["val"].masks, 4, 8, training=False, augment_images=False, seed=0)
        model = build_model("Unet", "resnet18", 4, 64, None, 1e-3)
        # The run exists before fit() in the trainer too (created by mlflow run): time fit() only.
        run = mlflow.start_run() if track else None
        start = time.perf_counter()
        model.fit(train, validation_data=val, epochs=spec.epochs, callbacks=[LogEpoch()] if track else [], verbose=0)
        elapsed = time.perf_counter() - start
        if run:
            mlflow.end_run()
        return elapsed

    once(False)  # warm-up: graph building and caches
    once(True)  # warm-up: the store's schema is created on first use
    with_, without = [], []
    for _ in range(args.reps):
        without.append(once(False))
        with_.append(once(True))
    ratio = statistics.median(with_) / statistics.median(without)
    row = f"| 4 epochs, Unet/resnet18, 64 px | {statistics.median(without):.2f} s | {statistics.median(with_):.2f} s | {ratio:.3f} (target <= 1.02) |"
    print(row)
    sys.path.insert(0, str(Path(__file__).parent))
    from results import record

    record("Tracking overhead", [f"Medians of {args.reps} alternating runs each, SQLite store.", "",
                                 "| training | without tracking | with tracking | ratio |", "|---|---|---|---|", row],
           "`.venv/bin/python benchmarks/tracking_overhead.py`")  # fmt: skip


if __name__ == "__main__":
    main()
