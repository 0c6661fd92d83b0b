import pytest
from pydantic import ValidationError

from flowops.segmentation.experiment import ExperimentSpec

BASE = {"name": "exp", "categories": ["person", "car"], "dataset": {"root": "data/x"}}


def spec(**changes) -> ExperimentSpec:
    return ExperimentSpec.model_validate({**BASE, **changes})


def errors(**changes) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as info:
        spec(**changes)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_defaults_are_filled_in():
    s = spec()
    assert (s.architecture, s.backbone, s.encoder_weights, s.image_size) == ("Unet", "resnet18", None, 128)
    assert (s.epochs, s.batch_size, s.learning_rate, s.seed, s.augment) == (10, 8, 1e-3, 42, True)
    assert s.dataset.train_annotations == "annotations/instances_train.json"
    assert s.class_names == ["background", "person", "car"]


def test_sha256_ignores_key_order_defaults_and_description():
    a = spec()
    b = ExperimentSpec.model_validate(
        {
            "dataset": {"root": "data/x"},
            "categories": ["person", "car"],
            "name": "exp",
            "epochs": 10,
            "description": "other",
        }
    )
    assert a.sha256() == b.sha256()
    assert len(a.sha256()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 11},
        {"learning_rate": 0.002},
        {"categories": ["car", "person"]},
        {"dataset": {"root": "data/y"}},
        {"name": "exp2"},
    ],
)
def test_sha256_changes_with_anything_that_changes_training(change):
    assert spec(**change).sha256() != spec().sha256()


def test_pspnet_needs_multiple_of_48():
    assert spec(architecture="PSPNet", image_size=96).image_size == 96
    assert errors(architecture="PSPNet", image_size=128) == [
        (("image_size",), "Value error, PSPNet needs a multiple of 48 (got 128; try 96 or 144)")
    ]


def test_other_architectures_need_multiple_of_32():
    assert errors(architecture="FPN", image_size=100) == [
        (("image_size",), "Value error, FPN needs a multiple of 32 (got 100; try 96 or 128)")
    ]


@pytest.mark.parametrize(
    "categories, message",
    [
        (["car", "car"], "Value error, category 'car' is listed twice"),
        (["background"], "Value error, 'background' is added automatically; do not list it"),
        (["a,b"], "Value error, category 'a,b' contains ',', which cannot be passed to MLflow"),
    ],
)
def test_category_rules(categories, message):
    assert errors(categories=categories) == [(("categories",), message)]


def test_coco_dataset_checks_category_names():
    assert spec(dataset="coco", categories=["traffic light"]).dataset == "coco"
    assert errors(dataset="coco", categories=["persn"]) == [
        (("categories",), "Value error, category 'persn' is not a COCO category (did you mean 'person'?)")
    ]


def test_strict_types():
    locs = [loc for loc, _ in errors(epochs="3", augment=1)]
    assert locs == [("epochs",), ("augment",)]


def test_training_budget():
    assert spec().training_budget is None
    assert spec(epochs=4, max_batches_per_epoch=25).training_budget == 100
