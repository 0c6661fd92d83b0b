"""Host pipeline (uint8 batches, seeded order) and in-step preparation (augmentation aligned, one-hot)."""

import numpy as np
import pytest
import tensorflow as tf

from flowops.segmentation.data import pipeline
from flowops.segmentation.data.pipeline import make_dataset
from flowops.segmentation.training.augment import augment, prepare_batch

SIZE = 64
STEP = 60  # image value per class: class k is painted k * STEP


def scene(seed: int) -> np.ndarray:
    """An asymmetric class mask of rectangles (flips and crops change it visibly)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for cls in (1, 2, 3):
        y, x = rng.integers(0, SIZE - 20, 2)
        mask[y : y + rng.integers(8, 20), x : x + rng.integers(8, 30)] = cls
    mask[:, :6] = 1  # a left border: a flip moves it to the right
    return mask


def agreement(image: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of pixels whose colour still says the class the mask says."""
    decoded = np.clip(np.round(image[..., 0] / STEP), 0, 3).astype(np.uint8)
    return float((decoded == mask).mean())


@pytest.mark.parametrize("seed", range(8))
def test_augmentation_keeps_image_and_mask_aligned(seed):
    mask = scene(seed)
    image = np.repeat((mask.astype(np.float32) * STEP)[..., None], 3, axis=-1)
    out_image, out_mask = augment(tf.constant(image), tf.constant(mask), tf.constant([seed, 7], tf.int64), colour=False)
    out_image, out_mask = out_image.numpy(), out_mask.numpy()
    assert out_image.shape == (SIZE, SIZE, 3) and out_mask.shape == (SIZE, SIZE)
    assert set(np.unique(out_mask)) <= {0, 1, 2, 3}  # nearest-neighbour: no invented classes
    # Bilinear resizing blurs edges of the image only; everything else must agree.
    assert agreement(out_image, out_mask) > 0.95
    # Negative control: the same mask flipped on its own no longer matches the image.
    assert agreement(out_image, out_mask[:, ::-1]) < 0.9


def test_augmentation_changes_something_and_keeps_value_range():
    mask = scene(0)
    image = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    outs = [augment(tf.constant(image), tf.constant(mask), tf.constant([s, 0], tf.int64))[0].numpy() for s in range(4)]
    assert all(0 <= o.min() and o.max() <= 255 for o in outs)
    assert sum(not np.allclose(o, image) for o in outs) >= 3


def test_host_batches_are_uint8_in_a_seeded_order_that_changes_every_epoch():
    images = np.random.default_rng(1).integers(0, 255, (10, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.stack([scene(i) for i in range(10)])

    def epochs(seed):
        ds = make_dataset(images, masks, 4, training=True, seed=seed, max_batches=2)
        return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]

    first, again, other = epochs(3), epochs(3), epochs(4)
    x, y = first[0][0]
    assert x.shape == (4, SIZE, SIZE, 3) and x.dtype == np.uint8
    assert y.shape == (4, SIZE, SIZE) and y.dtype == np.uint8
    assert len(first[0]) == 2  # max_batches caps an epoch
    # Every batch holds cached pairs, untouched: the image and its own mask.
    for xb, yb in first[0] + first[1]:
        for xi, yi in zip(xb, yb, strict=False):
            i = next(k for k in range(10) if np.array_equal(images[k], xi))
            assert np.array_equal(masks[i], yi)
    assert all(
        np.array_equal(a[0], b[0]) for a, b in zip(first[0] + first[1], again[0] + again[1], strict=False)
    )  # same seed, same order
    assert not np.array_equal(first[0][0][0], first[1][0][0])  # epochs differ
    assert not np.array_equal(first[0][0][0], other[0][0][0])  # seeds differ


def test_validation_batches_keep_the_cache_order():
    images = np.random.default_rng(2).integers(0, 255, (5, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.stack([scene(i) for i in range(5)])
    (x, y), *_ = list(make_dataset(images, masks, 5, training=False, seed=0))
    assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), masks)


def test_prepare_batch_converts_and_one_hot_encodes_with_or_without_augmentation():
    images = np.random.default_rng(3).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.stack([scene(i) for i in range(3)])
    x, y = prepare_batch(tf.constant(images), tf.constant(masks), 4)
    assert x.dtype == tf.float32 and np.array_equal(x.numpy(), images.astype(np.float32))
    assert (
        y.shape == (3, SIZE, SIZE, 4) and np.array_equal(y.numpy().argmax(-1), masks) and (y.numpy().sum(-1) == 1).all()
    )
    xa, ya = prepare_batch(tf.constant(images), tf.constant(masks), 4, tf.constant([5, 0], tf.int64))
    again, _ = prepare_batch(tf.constant(images), tf.constant(masks), 4, tf.constant([5, 0], tf.int64))
    assert xa.dtype == tf.float32 and not np.allclose(xa.numpy(), x.numpy())  # augmented
    assert np.array_equal(xa.numpy(), again.numpy())  # same seed, same augmentation
    assert (ya.numpy().sum(-1) == 1).all() and set(np.unique(ya.numpy())) == {0.0, 1.0}


def test_an_entry_over_the_memory_budget_is_streamed_in_the_same_batches(tmp_path, monkeypatch):
    """Within the budget the rows are loaded; over it they are read per batch: same seed, same batches."""
    rng = np.random.default_rng(5)
    arrays = {
        "images": rng.integers(0, 255, (11, SIZE, SIZE, 3), dtype=np.uint8),
        "masks": rng.integers(0, 4, (11, SIZE, SIZE), dtype=np.uint8),
    }
    for name, array in arrays.items():
        array.tofile(tmp_path / f"{name}.bin")
    images = np.memmap(tmp_path / "images.bin", np.uint8, "r", shape=arrays["images"].shape)
    masks = np.memmap(tmp_path / "masks.bin", np.uint8, "r", shape=arrays["masks"].shape)

    def batches():
        ds = make_dataset(images, masks, 4, training=True, seed=9)
        return [(x.numpy(), y.numpy()) for _ in range(2) for x, y in ds]

    loaded = batches()
    read_calls = []
    reader = pipeline._reader
    monkeypatch.setattr(pipeline, "_reader", lambda *a: read_calls.append(1) or reader(*a))
    monkeypatch.setenv(pipeline.IN_MEMORY_ENV, "0.1")  # 0.1 MiB, under these 11 rows' 0.17 MiB
    streamed = batches()
    assert read_calls == [1]  # over the budget: read from the files
    assert len(streamed) == len(loaded) == 6  # 3 batches (4, 4, 3) in each of two epochs
    for (xs, ys), (xl, yl) in zip(streamed, loaded, strict=True):
        assert np.array_equal(xs, xl) and np.array_equal(ys, yl)
    assert not np.array_equal(streamed[0][0], streamed[3][0])  # and a new order each epoch
