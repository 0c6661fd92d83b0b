"""The decode/resize methods: where the DCT-domain shrink applies, and that serving matches training."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from flowops.segmentation.preprocess import DRAFT, NEAR, PLAIN, decode_for, draft_scale, resize_image, shrink


@pytest.mark.parametrize(
    ("width", "height", "size", "scale"),
    [
        (640, 480, 256, 1),  # COCO at 256: within 2x, decoded at full size
        (640, 480, 240, 2),
        (640, 480, 128, 2),
        (1280, 960, 256, 2),
        (4032, 3024, 256, 8),  # a phone photo
        (4032, 3024, 512, 4),
        (480, 640, 128, 2),  # the shorter side decides, whichever it is
    ],
)
def test_the_dct_shrink_applies_only_where_the_target_is_at_most_half_the_source(width, height, size, scale):
    assert draft_scale(width, height, size, DRAFT) == scale
    assert draft_scale(width, height, size, PLAIN) == 1


@pytest.mark.parametrize(
    ("width", "height", "size", "scale"),
    [
        (640, 480, 256, 2),  # COCO at 256: 240 rows are 15/16 of 256
        (640, 481, 256, 2),
        (640, 479, 256, 1),  # just under 15/16
        (640, 427, 256, 1),  # COCO's 3:2 images keep their full decode
        (500, 375, 256, 1),
        (1280, 960, 256, 4),
        (4032, 3024, 512, 4),
        (4032, 3024, 256, 8),
        (480, 640, 256, 2),  # the shorter side decides, whichever it is
    ],
)
def test_the_near_method_shrinks_while_the_shorter_side_keeps_15_16_of_the_target(width, height, size, scale):
    assert draft_scale(width, height, size, NEAR) == scale


def _photo(width: int, height: int, turned: bool = False) -> bytes:
    """A JPEG with gradients, edges and noise, as a camera makes (optionally stored sideways, EXIF 6)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.float64)
    pixels[height // 4 : height // 2, width // 3 : width // 2] = (250, 30, 30)
    pixels += rng.normal(0, 12, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    if turned:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=90, exif=exif.tobytes())
    else:
        image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_large_jpeg_is_decoded_shrunk_and_its_full_size_still_known():
    data = _photo(1280, 960)
    full, image = decode_for(data, 256, DRAFT)
    assert full == (1280, 960) and image.size == (640, 480)  # libjpeg did half the work
    full, image = decode_for(data, 256, PLAIN)
    assert full == (1280, 960) and image.size == (1280, 960)
    full, image = decode_for(_photo(1280, 960, turned=True), 256, DRAFT)
    assert full == (1280, 960) and image.size == (640, 480)  # EXIF orientation applied after the shrink


def test_flowops_serve_sees_exactly_the_training_pixels_and_decoded_arrays_nearly():
    """The cache's path (DCT shrink, bilinear) against both ways a served model gets an image."""
    from flowops.serving.images import decode_image

    data = _photo(1280, 960)
    trained = resize_image(decode_for(data, 256, DRAFT)[1], 256)
    # flowops serve gets the JPEG: decoded as the cache decoded it, then the pyfunc's shrink (x1).
    served, full = decode_image(data, 10**7, 256, DRAFT)
    assert full == (1280, 960)
    np.testing.assert_array_equal(shrink(served, 256, DRAFT), trained)
    # mlflow models serve gets decoded pixels: a box reduce stands in for the DCT shrink.
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    emulated = shrink(pixels, 256, DRAFT)
    difference = np.abs(emulated.astype(int) - trained.astype(int))
    assert difference.mean() < 1.0, difference.mean()
    assert np.percentile(difference, 99) <= 8
    # Under the plain method (models logged before methods were recorded) nothing is shrunk first.
    np.testing.assert_array_equal(shrink(pixels, 256, PLAIN), resize_image(pixels, 256))


def test_near_training_pixels_and_both_ways_of_serving_them_at_cocos_size():
    """COCO's 640x480 at 256 under the near method: decoded at 320x240; flowops serve decodes the same
    way, and a decoded array (mlflow models serve) is box-reduced to nearly the same pixels."""
    from flowops.serving.images import decode_image

    data = _photo(640, 480)
    full, image = decode_for(data, 256, NEAR)
    assert full == (640, 480) and image.size == (320, 240)
    trained = resize_image(image, 256)
    served, _ = decode_image(data, 10**7, 256, NEAR)
    np.testing.assert_array_equal(shrink(served, 256, NEAR), trained)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    difference = np.abs(shrink(pixels, 256, NEAR).astype(int) - trained.astype(int))
    assert difference.mean() < 1.0, difference.mean()
    assert np.percentile(difference, 99) <= 8
    # and its distance from the plain method it replaces, on this noisy photo
    plain = np.abs(trained.astype(int) - resize_image(pixels, 256).astype(int))
    assert 0.5 < plain.mean() < 2.0, plain.mean()


def test_an_upright_image_is_decoded_to_the_same_pixels_without_the_exif_copy():
    """decode_for skips exif_transpose's copy for orientation 1: the pixels are exactly those it gave."""
    from PIL import ImageOps

    for data in (_photo(640, 480), _photo(640, 480, turned=True)):
        expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        _, got = decode_for(data, 256, PLAIN)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
