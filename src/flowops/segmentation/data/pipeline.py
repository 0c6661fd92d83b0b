"""The host side of the input pipeline: shuffle and batch the decoded uint8 cache.

A cache entry up to a fixed budget (`FLOWOPS_IN_MEMORY_MB`, 512 by default) is loaded into
memory and sliced by tf.data in C++: the fastest feed (~30,000 images/s on two cores). A larger
entry is never loaded whole: the pipeline shuffles indices and reads each batch's rows from the
files with positioned reads (~7,000 images/s on two cores, far more than one GPU trains at 256
px), so the process's memory is bounded by the budget, not by the dataset's size (the page
cache holds what the disk gives). docs/BENCHMARKS.md has both rates.

Nothing per pixel happens here: casting, augmentation and one-hot encoding run inside the
training step (`segmentation.training.augment`, `segmentation.training.model.training_model`), on the
accelerator when there is one. Two host cores then feed a GPU tens of thousands of images per second
(docs/BENCHMARKS.md), and the batches they hand over are uint8, a quarter of float32's bytes.
"""

from __future__ import annotations

import os

import numpy as np

from flowops import cancel
from flowops.segmentation.data import stream
from flowops.segmentation.data.stream import Building
from flowops.segmentation.tfenv import configure_tensorflow

configure_tensorflow()
import tensorflow as tf  # noqa: E402  (configured first)


def make_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    seed: int,
    max_batches: int | None = None,
    shard: tuple[int, int] | None = None,
    whole_batches: bool = False,
) -> tf.data.Dataset:
    """Batches of (uint8 images (b, h, w, 3), uint8 class-index masks (b, h, w)).

    Training batches come in a new seeded order every epoch (the same seed, the same orders);
    validation batches keep the cache's order. `shard=(index, count)`: one worker's share of a
    training split, endless (a multi-worker fit counts its steps): every count-th image of the
    seeded order from index, cut to the same length on every worker, in whole batches only.
    `whole_batches`: leave out a short last batch (several replicas split every batch).
    """
    mapped = isinstance(images, np.memmap) and isinstance(masks, np.memmap)
    # A worker's shard is always read from the files: its dataset is made inside the strategy's
    # scope, where the host variables of the in-memory path would become distributed ones.
    streamed = mapped and (not _fits(images, masks) or shard is not None)
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if shard:
        index, count = shard
        ds = ds.shard(count, index).take(len(images) // count).repeat()
    ds = ds.batch(batch_size, drop_remainder=bool(shard) or whole_batches)
    if max_batches:
        ds = ds.take(max_batches)
    if streamed:
        ds = ds.map(_reader(images, masks), num_parallel_calls=2)  # reads release the GIL; order kept
    else:
        ds = ds.map(_gather(images, masks))
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def first_epoch_dataset(
    building: Building,
    size: int,
    batch_size: int,
    *,
    training: bool,
    seed: int,
    max_batches: int | None = None,
    whole_batches: bool = False,
) -> tf.data.Dataset:
    """The first epoch's batches, read from the entry's files as its rows are decoded (`stream`).

    Training batches are drawn from a seeded window of the next rows (`stream.window_shuffled`):
    the same order whether the entry was cold or warm. The rows are read with positioned reads,
    as for entries over the in-memory budget; later epochs use `make_dataset` on the whole entry.
    """

    def wait_rows(have: int) -> int:
        while True:
            rows = building.wait_rows(have, timeout=0.25)
            if rows is not None:
                return rows
            if cancel.requested():  # a signal came while rows were awaited: end the epoch here
                return have

    def batches():
        return stream.window_shuffled(
            wait_rows, batch_size, seed, shuffle=training, window=stream.WINDOW, drop_remainder=whole_batches
        )

    ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec((None,), tf.int64))
    if max_batches:
        ds = ds.take(max_batches)
    rows = _rows_from(building.files, (size, size, 3), (size, size), f"cache entry of {building.name}", close=False)
    ds = ds.map(rows)  # one batch read at a time: a parallel map over a generator made TensorFlow log an E0000 line
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


IN_MEMORY_ENV = "FLOWOPS_IN_MEMORY_MB"
IN_MEMORY_MB = 512


def _fits(images: np.ndarray, masks: np.ndarray) -> bool:
    """Is the entry within the in-memory budget?"""
    budget = float(os.environ.get(IN_MEMORY_ENV, IN_MEMORY_MB)) * 2**20
    return images.nbytes + masks.nbytes <= budget


def _loaded(array: np.ndarray) -> np.ndarray:
    """A mapped entry read into memory with plain reads: mapping it would count its pages twice."""
    filename = getattr(array, "filename", None)
    if isinstance(array, np.memmap) and array.offset == 0 and filename:
        return np.fromfile(filename, np.uint8, count=array.size).reshape(array.shape)
    return array


def _gather(images: np.ndarray, masks: np.ndarray):
    """A tf.data map from a batch of row indices to the rows, gathered from the entry held in memory.

    The rows live in two host variables (one copy; a dataset built from the arrays themselves
    keeps two more inside its graph), read by tf.gather in C++.
    """
    with tf.device("/cpu:0"):
        held = [tf.Variable(_loaded(array), trainable=False) for array in (images, masks)]

    def rows(indices):
        return tf.gather(held[0], indices), tf.gather(held[1], indices)

    return rows


def _reader(images: np.ndarray, masks: np.ndarray):
    """A tf.data map from a batch of row indices to the rows, read from the entry's files."""
    paths = (str(getattr(images, "filename", "")), str(getattr(masks, "filename", "")))

    def opened() -> tuple[int, int]:
        return os.open(paths[0], os.O_RDONLY), os.open(paths[1], os.O_RDONLY)

    return _rows_from(opened, images.shape[1:], masks.shape[1:], paths[0], close=True)


def _rows_from(files, image_shape: tuple, mask_shape: tuple, name: str, close: bool):
    """The map reading a batch's rows with positioned reads from `files()` (images, masks descriptors)."""
    image_row, mask_row = int(np.prod(image_shape)), int(np.prod(mask_shape))

    def read(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = (np.empty((len(indices), *image_shape), np.uint8), np.empty((len(indices), *mask_shape), np.uint8))
        fds = files()
        try:
            for k, i in enumerate(indices.tolist()):  # straight into the batch: no intermediate bytes
                for fd, rows_out, size in zip(fds, out, (image_row, mask_row), strict=True):
                    if os.preadv(fd, [memoryview(rows_out[k]).cast("B")], i * size) != size:
                        raise OSError(f"{name}: short read at row {i} (the entry changed under training)")
        finally:
            if close:
                for fd in fds:
                    os.close(fd)
        return out

    def rows(indices):
        got_images, got_masks = tf.numpy_function(read, [indices], [tf.uint8, tf.uint8])
        got_images.set_shape([None, *image_shape])
        got_masks.set_shape([None, *mask_shape])
        return got_images, got_masks

    return rows
