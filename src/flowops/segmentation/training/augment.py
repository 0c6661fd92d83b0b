"""Augmentation and batch preparation, run inside the training step, on the accelerator.

The host pipeline (`flowops.segmentation.data.pipeline`) only shuffles and batches the uint8 cache; casting,
augmentation and one-hot encoding happen here, in the same graph as the forward pass. On a
GPU runner that keeps every per-pixel operation off the two host cores that would otherwise
be the bottleneck, and a uint8 batch is a quarter of the bytes to copy to the device.

Augmentation works on image and mask together (so they cannot drift apart), a whole batch
per op, with stateless seeds: the same seed gives the same augmented batch.
"""

from __future__ import annotations

from flowops.segmentation.tfenv import configure_tensorflow

configure_tensorflow()
import tensorflow as tf  # noqa: E402  (configured first)

MAX_SCALE = 1.25  # random zoom in [1, MAX_SCALE] before cropping back to size
MAX_BRIGHTNESS = 0.1 * 255
CONTRAST = (0.8, 1.2)


def augment_batch(
    images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor, colour: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """Zoom-crop and flip (images and masks alike), then brightness/contrast (images only).

    images: (b, h, w, 3) uint8 or float32 in [0, 255]; masks: (b, h, w) uint8; seed: (2,) int.
    Returns float32 images in [0, 255] and uint8 masks. One crop_and_resize call does zoom,
    crop and flip for the whole batch: each image gets a random box (a zoom in
    [1, MAX_SCALE] at a random offset), mirrored by swapping its x coordinates; the mask gets
    the same box with nearest-neighbour sampling.
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


def prepare_batch(
    images: tf.Tensor, masks: tf.Tensor, n_classes: int, seed: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 batch from the host pipeline -> (float32 images 0..255, float32 one-hot masks).

    With a seed the batch is augmented first; without one (validation) it is only converted.
    """
    if seed is None:
        images = tf.cast(images, tf.float32)
    else:
        images, masks = augment_batch(images, masks, seed)
    return images, tf.one_hot(tf.cast(masks, tf.int32), n_classes, dtype=tf.float32)
