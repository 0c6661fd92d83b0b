"""A training whose cache is cold takes its first step before the cache is complete (#33)."""

from __future__ import annotations

import os
import threading

import mlflow

from flowops import cancel
from flowops.segmentation.data import cache, stream
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.data.synth import generate
from flowops.segmentation.experiment import ExperimentSpec

from .conftest import tiny_spec


def test_the_first_training_step_comes_before_the_last_row_is_written(store, tmp_path, monkeypatch):
    """The training split's last image is a FIFO: its row cannot be written until the test feeds it,
    and the test feeds it only once a training step has ended (or after a minute, when the check
    below then fails). Every step's end records whether the entry was complete."""
    from flowops.segmentation.training.fit import fit

    root = tmp_path / "d"
    generate(root, images=40, width=64, height=48, seed=5)
    spec = ExperimentSpec.model_validate(tiny_spec(root))  # 32 px, 2 epochs of at most 3 batches
    monkeypatch.setattr(stream, "WINDOW", 8)
    val = cache.load_split(open_split(spec, "val"), spec.categories, spec.image_size)
    split = open_split(spec, "train")
    last = root / "train" / split.images[-1]["file_name"]
    data = last.read_bytes()
    last.unlink()
    os.mkfifo(last)

    building = stream.start(split, spec.categories, spec.image_size)
    complete_at_step: list[bool] = []
    stepped = threading.Event()

    def safe_point() -> None:  # called by fit's callback at the end of every training step
        complete_at_step.append(building.complete)
        stepped.set()

    monkeypatch.setattr(cancel, "safe_point", safe_point)

    def feed() -> None:
        stepped.wait(60)
        last.write_bytes(data)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    seen: list[int] = []
    with mlflow.start_run():
        _, history = fit(spec, {"train": building, "val": val}, on_data=lambda train: seen.append(len(train.images)))
    feeder.join(60)
    assert complete_at_step and complete_at_step[0] is False, complete_at_step  # trained before the entry was whole
    assert complete_at_step[-1] is True  # the later epoch trains on the whole entry
    assert seen == [len(split.images)]  # the data were recorded once, complete, the late image included
    assert len(history["loss"]) == spec.epochs
