"""A cold cache trains as it is built: the first batch comes before the last row is written."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from flowops.segmentation.data import cache, stream
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.data.pipeline import first_epoch_dataset
from flowops.segmentation.data.synth import generate
from flowops.segmentation.experiment import ExperimentSpec

SIZE = 32


def _split(root):
    spec = ExperimentSpec.model_validate({"name": "t", "categories": ["person", "car"], "dataset": {"root": str(root)}})
    return open_split(spec, "train")


def _batches(building, seed=0):
    ds = first_epoch_dataset(building, SIZE, 4, training=True, seed=seed)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_the_first_batch_trains_before_the_last_row_is_written(tmp_path, monkeypatch):
    """The split's last image is a FIFO: the build cannot write its row until the test feeds it,
    so a batch that arrives before then was read from an entry still being built."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(stream, "WINDOW", 8)
    root = tmp_path / "d"
    generate(root, images=40, width=96, height=64, seed=3)
    split = _split(root)
    last = root / "train" / split.images[-1]["file_name"]
    data = last.read_bytes()
    last.unlink()
    os.mkfifo(last)

    building = stream.start(split, ["person", "car"], SIZE)
    ds = first_epoch_dataset(building, SIZE, 4, training=True, seed=0)
    batches = iter(ds)
    first = next(batches)
    assert first[0].shape == (4, SIZE, SIZE, 3) and first[0].dtype == np.uint8
    assert not building.complete and building.rows < len(split.images)  # the last row is not there yet
    assert not list((tmp_path / "cache").glob("*/train/meta.json"))  # nor is the entry

    feeder = threading.Thread(target=lambda: last.write_bytes(data), daemon=True)
    feeder.start()
    cold = [(x.numpy(), y.numpy()) for x, y in [first, *batches]]
    feeder.join(30)
    complete = building.result()
    assert building.complete and len(complete.file_names) == len(split.images)
    rows = sum(len(x) for x, _ in cold)
    assert rows == len(complete.file_names)  # every row once, the late one included
    building.close()

    # The same entry, warm, gives the same batches: a cold cache trains exactly as a warm one.
    last.unlink()
    last.write_bytes(data)  # (a plain file again: the entry is keyed by its stamp, so rebuilt)
    warm_building = stream.finished(complete)
    warm = _batches(warm_building)
    assert len(warm) == len(cold)
    for (cx, cy), (wx, wy) in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(cx, wx)
        np.testing.assert_array_equal(cy, wy)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(warm, _batches(warm_building, seed=1), strict=True))


def test_a_build_that_fails_is_said_with_its_own_error(tmp_path, monkeypatch):
    """Half the images unreadable: the build fails after its last row. The first epoch has read
    what was readable by then (or stops at the failure, if it asks after it); either way the entry
    answers with the build's own error, which fit() raises instead of TensorFlow's wrapping."""
    from flowops.errors import FlowopsError

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    root = tmp_path / "d"
    generate(root, images=30, width=96, height=64, seed=3)
    split = _split(root)
    for image in split.images[: len(split.images) // 2]:
        (root / "train" / image["file_name"]).write_bytes(b"not a jpeg")
    building = stream.start(split, ["person", "car"], SIZE)
    try:
        rows = sum(len(x) for x, _ in _batches(building))
    except Exception as exc:  # the failure came before the epoch's last request: tf.data carries it
        assert "images unreadable" in str(exc)
    else:
        assert 0 < rows <= len(split.images) - len(split.images) // 2
    with pytest.raises(FlowopsError, match="images unreadable"):
        building.result()
    assert isinstance(building.failure(), FlowopsError)
