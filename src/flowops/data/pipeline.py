"""The host side of the input pipeline: shuffle and batch the decoded uint8 cache.

A cache entry on disk (memory-mapped arrays) is never loaded whole: the pipeline shuffles
indices and reads each batch's rows from the files with positioned reads, so the process's
memory stays flat in the dataset's size (the page cache holds what the disk gives).

Nothing per pixel happens here: casting, augmentation and one-hot encoding run inside the
training step (`flowops.training.augment`, `flowops.training.model.training_model`), on the accelerator when
there is one. Two host cores then feed a GPU tens of thousands of images per second
(docs/BENCHMARKS.md), and the batches they hand over are uint8, a quarter of float32's bytes.
"""

from __future__ import annotations

import os

import numpy as np

from flowops.tfenv import configure_tensorflow

configure_tensorflow()
import tensorflow as tf  # noqa: E402  (configured first)


def make_dataset(
    images: np.ndarray, masks: np.ndarray, batch_size: int, *, training: bool, seed: int, max_batches: int | None = None
) -> tf.data.Dataset:
    """Batches of (uint8 images (b, h, w, 3), uint8 class-index masks (b, h, w)).

    Training batches come in a new seeded order every epoch (the same seed, the same orders);
    validation batches keep the cache's order.
    """
    streamed = isinstance(images, np.memmap) and isinstance(masks, np.memmap)
    ds = tf.data.Dataset.range(len(images)) if streamed else tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if max_batches:
        ds = ds.take(max_batches)
    if streamed:
        ds = ds.map(_reader(images, masks))  # sequential reads; prefetch overlaps them with training
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _reader(images: np.ndarray, masks: np.ndarray):
    """A tf.data map from a batch of row indices to the rows, read from the entry's files."""
    image_shape, mask_shape = images.shape[1:], masks.shape[1:]
    image_row, mask_row = int(np.prod(image_shape)), int(np.prod(mask_shape))
    paths = (str(getattr(images, "filename", "")), str(getattr(masks, "filename", "")))

    def read(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out_images = np.empty((len(indices), *image_shape), np.uint8)
        out_masks = np.empty((len(indices), *mask_shape), np.uint8)
        fds = [os.open(p, os.O_RDONLY) for p in paths]
        try:
            for k, i in enumerate(indices.tolist()):
                out_images[k] = np.frombuffer(os.pread(fds[0], image_row, i * image_row), np.uint8).reshape(image_shape)
                out_masks[k] = np.frombuffer(os.pread(fds[1], mask_row, i * mask_row), np.uint8).reshape(mask_shape)
        finally:
            for fd in fds:
                os.close(fd)
        return out_images, out_masks

    def rows(indices):
        got_images, got_masks = tf.numpy_function(read, [indices], [tf.uint8, tf.uint8])
        got_images.set_shape([None, *image_shape])
        got_masks.set_shape([None, *mask_shape])
        return got_images, got_masks

    return rows
