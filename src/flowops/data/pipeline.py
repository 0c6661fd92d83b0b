"""The host side of the input pipeline: shuffle and batch the decoded uint8 cache.

Nothing per pixel happens here: casting, augmentation and one-hot encoding run inside the
training step (`flowops.training.augment`, `flowops.training.model.training_model`), on the accelerator when
there is one. Two host cores then feed a GPU tens of thousands of images per second
(docs/BENCHMARKS.md), and the batches they hand over are uint8, a quarter of float32's bytes.
"""

from __future__ import annotations

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
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if max_batches:
        ds = ds.take(max_batches)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
