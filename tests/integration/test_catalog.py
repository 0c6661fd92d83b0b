"""The names and preprocessing flowops lists without TensorFlow agree with segmentation-models."""

import numpy as np
import pytest

from flowops.segmentation.catalog import BACKBONES
from flowops.segmentation.tfenv import configure_tensorflow
from flowops.segmentation.training.model import MODE_OF, preprocess_layer, preprocess_numpy

configure_tensorflow()
import segmentation_models as sm  # noqa: E402  (after configure_tensorflow: it needs tf.keras)


def test_backbones_are_exactly_what_segmentation_models_offers():
    assert sorted(BACKBONES) == sorted(sm.Backbones.models_names())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_preprocess_layer_matches_segmentation_models(backbone):
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = sm.get_preprocessing(backbone)(x.copy())
    mode = MODE_OF[backbone]
    np.testing.assert_allclose(preprocess_numpy(x, mode), expected, rtol=1e-5, atol=1e-4)
    layer = preprocess_layer()(mode)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-4)
