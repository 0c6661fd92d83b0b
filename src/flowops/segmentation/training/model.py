"""The segmentation model: segmentation-models through tf.keras, with its own preprocessing.

Nothing here runs at import time: TensorFlow is imported inside the functions, after
`flowops.segmentation.tfenv.configure_tensorflow()` has set its environment.
"""

from __future__ import annotations

import numpy as np

from flowops.segmentation.tfenv import configure_tensorflow, muted_output

# How each backbone expects its input (segmentation_models.get_preprocessing), as plain
# arithmetic so the saved model carries it as a layer. tests/integration checks this table
# against segmentation-models itself for every backbone.
PREPROCESSING = {
    "none": (
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "seresnet18",
        "seresnet34",
        "resnext50",
        "resnext101",
    ),
    "caffe": ("vgg16", "vgg19"),
    "tf": ("inceptionv3", "inceptionresnetv2", "mobilenet", "mobilenetv2"),
    "torch": (
        "seresnet50",
        "seresnet101",
        "seresnet152",
        "seresnext50",
        "seresnext101",
        "senet154",
        "densenet121",
        "densenet169",
        "densenet201",
        *(f"efficientnetb{i}" for i in range(8)),
    ),
}
MODE_OF = {backbone: mode for mode, names in PREPROCESSING.items() for backbone in names}
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
BN_MOMENTUM = 0.9


def preprocess_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    """Reference implementation of the Preprocess layer (float32 RGB in [0, 255])."""
    x = x.astype(np.float32)
    if mode == "torch":
        return (x / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x[..., ::-1] - _CAFFE_MEAN_BGR
    return x


def _keras():
    configure_tensorflow()
    import tf_keras

    return tf_keras


def _sm():
    """segmentation-models, imported quietly (it prints its framework on import)."""
    configure_tensorflow()
    with muted_output():
        import segmentation_models

    return segmentation_models


def _preprocess_layer_class():
    keras = _keras()
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="flowops")
    class Preprocess(keras.layers.Layer):  # type: ignore[name-defined]  # a runtime base class
        """Backbone input scaling inside the model, so serving cannot forget it."""

        def __init__(self, mode: str = "none", **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            x = tf.cast(x, tf.float32)
            if self.mode == "torch":
                return (x / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
            if self.mode == "tf":
                return x / 127.5 - 1.0
            if self.mode == "caffe":
                return x[..., ::-1] - _CAFFE_MEAN_BGR
            return x

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return Preprocess


_PREPROCESS = None


def preprocess_layer():
    global _PREPROCESS
    if _PREPROCESS is None:
        _PREPROCESS = _preprocess_layer_class()
    return _PREPROCESS


def build_model(
    architecture: str, backbone: str, n_classes: int, image_size: int, encoder_weights: str | None, strategy=None
):
    """Preprocess -> segmentation-models network -> softmax, not compiled (`training_model` does that).

    `strategy`: the training's one strategy (flowops.segmentation.training.distribute.strategy); the model's
    variables are made in its scope, as `training_model` must compile in the same one.

    The softmax is its own float32 layer, so under mixed precision the probabilities (and
    the loss computed from them) stay float32 while the network computes in float16.
    """
    keras = _keras()
    sm = _sm()

    with _scope(strategy):
        network = getattr(sm, architecture)(
            backbone,
            encoder_weights=encoder_weights,
            classes=n_classes,
            activation="linear",
            input_shape=(image_size, image_size, 3),
        )
        # Moving statistics must keep up with the weights: with Keras' default momentum (0.99)
        # and a few dozen steps per epoch, validation sees stale statistics and its IoU swings
        # from epoch to epoch while training IoU climbs. 0.9 follows within ~10 steps.
        for layer in _all_layers(network):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
        inputs = keras.Input((image_size, image_size, 3), name="image")
        logits = network(preprocess_layer()(MODE_OF[backbone], name="preprocess")(inputs))
        outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(logits)
        return keras.Model(inputs, outputs, name=f"{architecture}_{backbone}")


def training_model(
    model,
    n_classes: int,
    learning_rate: float,
    *,
    augment: bool,
    seed: int,
    jit_compile: bool = False,
    strategy=None,
):
    """`model` compiled for fit() on uint8 batches: the step casts, augments and one-hot encodes.

    The returned model shares `model`'s layers and weights; save `model`, not this one.
    Augmentation seeds come from one seeded generator, one draw per step, so the same seed
    gives the same run.
    """
    keras = _keras()
    sm = _sm()
    import tensorflow as tf

    from flowops.segmentation.training.augment import prepare_batch

    class Trainer(keras.Model):  # type: ignore[name-defined]  # a runtime base class
        def train_step(self, data):
            images, masks = data
            seed = self.seeds.make_seeds(1)[:, 0] if augment else None
            return self.model_step(prepare_batch(images, masks, n_classes, seed))

        def model_step(self, batch):
            return super().train_step(batch)

        def test_step(self, data):
            images, masks = data
            return super().test_step(prepare_batch(images, masks, n_classes))

    with _scope(strategy):
        trainer = Trainer(model.inputs, model.outputs, name=model.name)
        trainer.seeds = tf.random.Generator.from_seed(seed)
        if jit_compile:  # XLA has no CropAndResize: compile the model's step, not the augmentation
            trainer.model_step = tf.function(trainer.model_step, jit_compile=True)  # type: ignore[method-assign]
        loss = segmentation_loss()
        metrics = [
            ignoring(sm.metrics.IOUScore(threshold=0.5), "iou"),
            ignoring(sm.metrics.FScore(threshold=0.5), "f1"),
        ]
        trainer.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
        _build_before_fit(trainer, tf)
    return trainer


def _build_before_fit(trainer, tf) -> None:
    """Create the optimizer's slots and the compiled loss's and metrics' variables now. Created
    inside fit's first trace instead, they make TensorFlow trace the whole train step a second
    time: about 2 s of CPU at the start of every training, for the same numbers."""
    shape = tuple(trainer.output_shape)[1:]
    if any(d is None for d in shape):  # not known before data arrives: fit builds them itself
        return
    outputs = tf.zeros((1, *shape))
    trainer.optimizer.build(trainer.trainable_variables)
    trainer.compiled_loss.build(outputs)
    trainer.compiled_metrics.build(outputs, outputs)


def segmentation_loss():
    """The training loss, labelled pixels only: Dice handles the class imbalance (small objects),
    focal loss sharpens boundaries. (one-hot truth, softmax) -> a scalar over the batch."""
    sm = _sm()
    return ignoring(sm.losses.DiceLoss() + sm.losses.CategoricalFocalLoss(), "loss")


def per_image_loss(n_classes: int):
    """(uint8 masks (n, H, W), softmax (n, H, W, C)) -> each image's loss alone, float64 (n,):
    `val_loss` is their mean, whatever the batch size, replicas or workers of the training."""
    import numpy as np
    import tensorflow as tf

    loss = segmentation_loss()
    one = tf.function(lambda t, p: loss(tf.one_hot(tf.cast(t, tf.int32), n_classes, dtype=tf.float32), p))

    def losses(masks, softmax):
        return np.array(
            [
                float(one(masks[i : i + 1], tf.convert_to_tensor(softmax[i : i + 1], tf.float32)))
                for i in range(len(masks))
            ],
            dtype=np.float64,
        )

    return losses


def _scope(strategy):
    """The given strategy's scope, else the one in effect (the default strategy outside any scope)."""
    import tensorflow as tf

    return (strategy or tf.distribute.get_strategy()).scope()


def ignoring(fn, name: str):
    """`fn` on labelled pixels only: where the one-hot target is all zeros (IGNORE, a COCO crowd), the
    prediction is zeroed too, so such a pixel adds nothing to Dice, focal loss, IoU or F-score."""
    import tensorflow as tf

    def wrapped(y_true, y_pred):
        labelled = tf.reduce_sum(y_true, axis=-1, keepdims=True)
        return fn(y_true, y_pred * tf.cast(labelled, y_pred.dtype))

    wrapped.__name__ = name
    return wrapped


def float32_copy(model, architecture: str, backbone: str, n_classes: int, image_size: int):
    """The same weights in a float32 model: what a CPU serves, whatever the GPU trained with."""
    keras = _keras()
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_model(architecture, backbone, n_classes, image_size, None)
        copy.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return copy


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def load_model(path: str):
    """Reload a saved model for inference (compile=False: no custom losses or metrics needed)."""
    keras = _keras()
    preprocess_layer()  # registers the custom layer
    _sm()  # registers the backbones' custom layers, e.g. EfficientNet's

    return keras.models.load_model(path, compile=False)


def inference_function(model):
    """The one forward pass used to evaluate and to serve: a traced tf.function (about 30% faster
    than predict_on_batch for single images on CPU; XLA was slower still). float32 batch in, softmax out."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda batch: forward(tf.convert_to_tensor(batch, tf.float32)).numpy()
