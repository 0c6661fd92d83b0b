"""The tf.data input pipeline over the decoded cache.

Images stay uint8 until a batch is formed; augmentation runs as TensorFlow ops on image
and mask together (so they cannot drift apart) with stateless seeds drawn from one seeded
stream, which makes every epoch different and every run with the same seed identical.
"""

from __future__ import annotations

import numpy as np

from flowops.model import configure_tensorflow

configure_tensorflow()
import tensorflow as tf  # noqa: E402  (configured first)

MAX_SCALE = 1.25  # random zoom in [1, MAX_SCALE] before cropping back to size
MAX_BRIGHTNESS = 0.1 * 255
CONTRAST = (0.8, 1.2)


def augment(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, colour: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """Flip, zoom-and-crop (image and mask alike), then brightness/contrast (image only).

    image: (h, w, 3) float32 in [0, 255]; mask: (h, w) uint8; seed: (2,) int64.
    """
    size = tf.shape(image)[:2]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, axis=[1]), lambda: mask)

    scale = tf.random.stateless_uniform([], seeds[1], 1.0, MAX_SCALE)
    big = tf.cast(tf.math.ceil(tf.cast(size, tf.float32) * scale), tf.int32)
    image = tf.image.resize(image, big, method="bilinear")
    mask = tf.image.resize(mask[..., None], big, method="nearest")[..., 0]
    offset_max = big - size + 1
    oy = tf.random.stateless_uniform([], seeds[2], 0, offset_max[0], dtype=tf.int32)
    ox = tf.random.stateless_uniform([], seeds[3], 0, offset_max[1], dtype=tf.int32)
    image = image[oy : oy + size[0], ox : ox + size[1]]
    mask = mask[oy : oy + size[0], ox : ox + size[1]]

    if colour:
        image = tf.image.stateless_random_brightness(image, MAX_BRIGHTNESS, seeds[4])
        image = tf.image.stateless_random_contrast(image, *CONTRAST, tf.random.experimental.stateless_fold_in(seeds[4], 1))
        image = tf.clip_by_value(image, 0.0, 255.0)
    return image, mask


def make_dataset(images: np.ndarray, masks: np.ndarray, n_classes: int, batch_size: int, *, training: bool,
                 augment_images: bool, seed: int, max_batches: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """Batches of (float32 image 0..255, float32 one-hot mask) ready for Keras."""
    size = images.shape[1:3]
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda im, m: (tf.cast(im, tf.float32), m), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment_images:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda pair, s: augment(*pair, s), num_parallel_calls=tf.data.AUTOTUNE)

    def finish(image, mask):
        image = tf.ensure_shape(image, (*size, 3))
        return image, tf.one_hot(tf.cast(mask, tf.int32), n_classes, dtype=tf.float32)

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    if max_batches:
        ds = ds.take(max_batches)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
