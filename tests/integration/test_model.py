"""The training wrapper: uint8 batches in, augmentation seeded, weights shared with the saved model;
mixed precision trains (on this CPU, standing in for a GPU) and hands back a float32 copy."""

import numpy as np

from flowops.segmentation.tfenv import configure_tensorflow
from flowops.segmentation.training.model import build_model, float32_copy, training_model

configure_tensorflow()
import tf_keras  # noqa: E402  (after configure_tensorflow, as flowops imports it)

SIZE, CLASSES = 64, 3
TRACES: list[int] = []  # how many times each one_step's fit traced its train step


def data(n=4):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    masks[:, 10:30, 5:40] = 1
    masks[:, 40:60, 20:50] = 2
    return images, masks


def one_step(seed: int, augment: bool):
    tf_keras.utils.set_random_seed(0)
    model = build_model("Unet", "resnet18", CLASSES, SIZE, None)
    before = [w.copy() for w in model.get_weights()]
    trainer = training_model(model, CLASSES, 1e-3, augment=augment, seed=seed)
    history = trainer.fit(*data(), batch_size=4, epochs=1, verbose=0)
    TRACES.append(trainer.train_function.experimental_get_tracing_count())
    return model, before, history.history


def test_trainer_updates_the_model_that_gets_saved_and_is_seeded():
    model, before, history = one_step(seed=1, augment=True)
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["iou"][0] <= 1.0
    assert TRACES[-1] == 1  # variables made before fit: the train step is traced once, not twice
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=False)]
    assert sum(changed) > len(changed) // 2  # the wrapper trained the same layers
    same, _, _ = one_step(seed=1, augment=True)
    other, _, _ = one_step(seed=2, augment=True)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), same.get_weights(), strict=False))
    assert not all(
        np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights(), strict=False)
    )  # other augmentation


def test_mixed_precision_trains_and_the_copy_is_float32():
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, _, history = one_step(seed=1, augment=True)
        assert model.output.dtype == "float32"  # softmax (and so the loss) stays float32
        assert np.isfinite(history["loss"][0])
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    copy = float32_copy(model, "Unet", "resnet18", CLASSES, SIZE)
    assert {layer.compute_dtype for layer in copy.layers if layer.compute_dtype} == {"float32"}
    images = data(2)[0].astype(np.float32)
    ours, theirs = copy(images, training=False).numpy(), model(images, training=False).numpy()
    # The same weights: float16 rounding moves probabilities a little, rarely the predicted class.
    assert np.abs(ours - theirs).mean() < 0.01
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() > 0.97
    fresh = build_model("Unet", "resnet18", CLASSES, SIZE, None)  # negative control: other weights
    assert np.abs(fresh(images, training=False).numpy() - theirs).mean() > 0.05
