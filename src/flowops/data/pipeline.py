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


def augment_batch(images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor, colour: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """Zoom-crop and flip (images and masks alike), then brightness/contrast (images only), a batch at a time.

    images: (b, h, w, 3) float32 in [0, 255]; masks: (b, h, w) uint8; seed: (2,) int64.
    One crop_and_resize call per batch does what per-image ops did one image at a time: each
    image gets a random box (a zoom in [1, MAX_SCALE] at a random offset), mirrored by
    swapping its x coordinates; the mask gets the same box with nearest-neighbour sampling.
    """
    b = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    u = tf.random.stateless_uniform([b, 6], seed)
    extent = 1.0 / (1.0 + (MAX_SCALE - 1.0) * u[:, 0])
    y1 = u[:, 1] * (1.0 - extent)
    x1 = u[:, 2] * (1.0 - extent)
    flip = u[:, 3] < 0.5
    left, right = tf.where(flip, x1 + extent, x1), tf.where(flip, x1, x1 + extent)
    boxes = tf.stack([y1, left, y1 + extent, right], axis=1)
    index = tf.range(b)
    images = tf.image.crop_and_resize(images, boxes, index, size, method="bilinear")
    masks = tf.image.crop_and_resize(tf.cast(masks[..., None], tf.float32), boxes, index, size, method="nearest")
    masks = tf.cast(tf.round(masks[..., 0]), tf.uint8)
    if colour:
        delta = (u[:, 4] * 2.0 - 1.0) * MAX_BRIGHTNESS
        factor = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u[:, 5]
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * factor[:, None, None, None] + mean + delta[:, None, None, None]
        images = tf.clip_by_value(images, 0.0, 255.0)
    return images, masks


def augment(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, colour: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """augment_batch for one image (h, w, 3) and its mask (h, w)."""
    images, masks = augment_batch(image[None], mask[None], seed, colour)
    return images[0], masks[0]


def make_dataset(images: np.ndarray, masks: np.ndarray, n_classes: int, batch_size: int, *, training: bool,
                 augment_images: bool, seed: int, max_batches: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """Batches of (float32 image 0..255, float32 one-hot mask) ready for Keras.

    Work happens on whole batches (cast, augmentation, one-hot): a few large ops instead of
    many small ones per image, which is what keeps a GPU fed from two CPU cores.
    """
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if max_batches:
        ds = ds.take(max_batches)
    ds = ds.map(lambda im, m: (tf.cast(im, tf.float32), m), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment_images:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda pair, s: augment_batch(*pair, s), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda im, m: (im, tf.one_hot(tf.cast(m, tf.int32), n_classes, dtype=tf.float32)), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
