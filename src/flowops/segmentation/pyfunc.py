"""The logged model: an MLflow pyfunc that carries the training-time preprocessing.

Input: a batch of RGB uint8 images, (n, h, w, 3). Output: class-index masks, (n, h, w)
uint8, at the input's own size. Each image is shrunk by the method its training data were
(`preprocess` in the model's metadata; `flowops.segmentation.preprocess.shrink`), scaled by the model's
own Preprocess layer, and the predicted mask is resized back with nearest neighbour, so
`mlflow models serve`, `flowops serve` and the evaluation at training time see the same inputs.
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np

from flowops.segmentation.preprocess import PLAIN, resize_mask, shrink

META_FILE = "flowops_model.json"


def predict_masks(forward, images, image_size: int, batch_size: int = 8, method: str = PLAIN) -> list[np.ndarray]:
    """Class-index masks, one per input image, each at that image's size (`forward`: model.inference_function)."""
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = np.stack([shrink(np.asarray(im, dtype=np.uint8), image_size, method) for im in chunk]).astype(
            np.float32
        )
        classes = np.argmax(forward(batch), axis=-1).astype(np.uint8)
        out.extend(resize_mask(c, im.shape[1], im.shape[0]) for c, im in zip(classes, chunk, strict=False))
    return out


class SegmentationModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # mlflow ships no types
    """pyfunc wrapper around the saved Keras model and its class names."""

    def load_context(self, context):
        from flowops.segmentation.training.model import inference_function, load_model

        with open(context.artifacts["meta"]) as fh:
            self.meta = json.load(fh)
        self.model = load_model(context.artifacts["keras_model"])
        self.forward = inference_function(self.model)

    def predict(self, context, model_input, params=None):
        images = np.asarray(model_input)
        if images.ndim == 3:  # a single image
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images shaped (n, height, width, 3), got {images.shape}")
        method = self.meta.get("preprocess", PLAIN)  # models logged before methods were recorded: plain
        return np.stack(
            predict_masks(self.forward, list(images.astype(np.uint8)), self.meta["image_size"], method=method)
        )
