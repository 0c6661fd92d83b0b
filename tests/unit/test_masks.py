"""Masks compared pixel for pixel with pycocotools' own decoding."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from flowops.segmentation.data.masks import IGNORE, class_mask, one_hot
from flowops.segmentation.data.synth import rle_compressed, rle_uncompressed
from flowops.segmentation.preprocess import resize_mask

H, W = 40, 50


def coco_with(annotations):
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "iscrowd": a.pop("iscrowd", 0), "area": 1.0, "bbox": [0, 0, 1, 1], **a}
            for i, a in enumerate(annotations)
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
    }
    coco.createIndex()
    return coco


def blob(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def test_every_polygon_part_counts():
    parts = [[2, 2, 12, 2, 12, 20, 2, 20], [30, 5, 45, 5, 45, 30, 30, 30]]  # two disjoint parts
    coco = coco_with([{"category_id": 1, "segmentation": parts}])
    image = coco.imgs[1]
    expected = coco.annToMask(coco.anns[1])
    mask = class_mask(coco, image, {1: 1})
    assert np.array_equal(mask, expected)  # same pixels as pycocotools' decoding
    only_first = mask_utils.decode(mask_utils.frPyObjects([parts[0]], H, W))[..., 0]
    assert mask.sum() > only_first.sum() > 0  # the original project's bug: first part only


@pytest.mark.parametrize("encode", [rle_compressed, rle_uncompressed], ids=["compressed", "uncompressed"])
def test_crowd_rle_is_decoded_not_read_as_polygon(encode):
    truth = blob(5, 15, 3, 9) | blob(20, 35, 30, 40)
    coco = coco_with([{"category_id": 3, "segmentation": encode(truth), "iscrowd": 1}])
    mask = class_mask(coco, coco.imgs[1], {3: 2})
    assert np.array_equal(mask, np.where(truth, IGNORE, 0))  # a crowd is ignored, not foreground
    assert np.array_equal(mask > 0, coco.annToMask(coco.anns[1]).astype(bool))


def test_an_object_drawn_over_a_crowd_keeps_its_class():
    crowd = blob(0, 30, 0, 30)
    coco = coco_with(
        [
            {"category_id": 3, "segmentation": rle_compressed(crowd), "iscrowd": 1},
            {"category_id": 3, "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]},
        ]
    )
    mask = class_mask(coco, coco.imgs[1], {3: 2})
    assert mask[10, 10] == 2 and mask[25, 25] == IGNORE and mask[35, 35] == 0
    assert one_hot(mask, 3)[25, 25].tolist() == [0.0, 0.0, 0.0]  # no class at all: no loss


def test_uncompressed_rle_matches_pycocotools_encoding():
    truth = blob(0, 4, 0, 3) | blob(10, 40, 20, 50)  # touches the first pixel and the last
    rle = rle_uncompressed(truth)
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, H, W))
    assert np.array_equal(decoded, truth)


def test_overlap_goes_to_the_smaller_object_then_the_first_listed_category():
    big = blob(0, 30, 0, 30)  # car, 900 px
    small = blob(10, 20, 10, 20)  # dog, 100 px, on top of the car
    coco = coco_with(
        [
            {"category_id": 18, "segmentation": rle_compressed(small)},
            {"category_id": 3, "segmentation": rle_compressed(big)},
        ]
    )
    mask = class_mask(coco, coco.imgs[1], {3: 1, 18: 2})
    assert (mask[10:20, 10:20] == 2).all()
    assert (mask[0:10, 0:30] == 1).all()
    # equal areas: the category listed first in the experiment wins
    coco = coco_with(
        [
            {"category_id": 3, "segmentation": rle_compressed(blob(0, 10, 0, 10))},
            {"category_id": 1, "segmentation": rle_compressed(blob(0, 10, 0, 10))},
        ]
    )
    assert (class_mask(coco, coco.imgs[1], {1: 1, 3: 2})[0:10, 0:10] == 1).all()
    assert (class_mask(coco, coco.imgs[1], {3: 1, 1: 2})[0:10, 0:10] == 1).all()


def test_unselected_categories_are_background():
    coco = coco_with([{"category_id": 18, "segmentation": rle_compressed(blob(0, 10, 0, 10))}])
    assert class_mask(coco, coco.imgs[1], {1: 1}).max() == 0


def test_one_hot_is_exactly_one_hot():
    mask = np.random.default_rng(0).integers(0, 4, (H, W)).astype(np.uint8)
    encoded = one_hot(mask, 4)
    assert encoded.shape == (H, W, 4)
    assert set(np.unique(encoded)) == {0.0, 1.0}
    assert (encoded.sum(-1) == 1).all()
    assert np.array_equal(encoded.argmax(-1), mask)


def test_masks_drawn_at_the_cache_size_match_full_size_masks_shrunk():
    parts = [[2, 2, 22, 3, 20, 25, 3, 18], [30, 5, 48, 8, 45, 36, 31, 30]]  # two parts, slanted edges
    crowd = blob(28, 40, 0, 12)
    coco = coco_with(
        [
            {"category_id": 1, "segmentation": parts},
            {"category_id": 3, "segmentation": rle_compressed(crowd), "iscrowd": 1},
        ]
    )
    full = class_mask(coco, coco.imgs[1], {1: 1, 3: 2})
    for size in (20, 32, 64):
        small = class_mask(coco, coco.imgs[1], {1: 1, 3: 2}, size)
        shrunk = resize_mask(full, size, size)
        assert small.shape == (size, size) and set(np.unique(small)) == {0, 1, IGNORE}
        assert (small == shrunk).mean() > 0.9  # only edge pixels may differ
        assert np.array_equal(small == IGNORE, shrunk == IGNORE)  # RLE: shrunk the same way exactly


def test_degenerate_annotations_are_skipped_and_named():
    coco = coco_with(
        [
            {"category_id": 1, "segmentation": []},  # COCO has some: no polygon at all
            {"category_id": 1, "segmentation": [[1, 1, 5, 5]]},  # two points
            {"category_id": 1, "segmentation": [[1, 1, 5, 5, 9]]},  # an odd count
            {"category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},  # a real square
            {"category_id": 1, "segmentation": [[1, 1, 5, 5, 9, 9]]},  # #32.15: three points on one line
            {"category_id": 1, "segmentation": [], "bbox": []},  # no box either
        ]
    )
    skipped: list[str] = []
    mask = class_mask(coco, coco.imgs[1], {1: 1}, None, skipped)
    assert mask[5, 5] == 1 and mask.sum() > 0
    assert skipped == [
        "annotation 1 of a.jpg: a box only, no segmentation",  # #32.15: it was "empty segmentation"
        "annotation 2 of a.jpg: polygon with 4 numbers (needs 3 points or more)",
        "annotation 3 of a.jpg: polygon with 5 numbers (needs 3 points or more)",
        "annotation 5 of a.jpg: polygon of zero area (its points are on one line)",
        "annotation 6 of a.jpg: empty segmentation",
    ]
    assert class_mask(coco, coco.imgs[1], {1: 1}, 20).shape == (20, 20)  # the cache's path skips them too
