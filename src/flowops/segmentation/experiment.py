"""The experiment spec: the single source of truth for one training.

An experiment file lists only what differs from the defaults below; each default says
why it is what it is. The MLproject parameters mirror these fields (`params.py`), and
`experiments/schema.json` is generated from this model (`flowops schema`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowops import yamlfile
from flowops.errors import ProblemsError
from flowops.segmentation.catalog import ARCHITECTURES, BACKBONES, COCO_CATEGORIES
from flowops.spec.load import not_a_mapping
from flowops.spec.problems import problems_from, register_choices, register_union
from flowops.suggest import did_you_mean

register_choices(architecture=ARCHITECTURES, backbone=BACKBONES, encoder_weights=("imagenet", "null"))
register_union("dataset", "DatasetPaths", "must be 'coco' or a mapping with a root folder")
Architecture = Literal[ARCHITECTURES]  # type: ignore[valid-type]
Backbone = Literal[BACKBONES]  # type: ignore[valid-type]

# Encoders downsample by 32 (Unet/FPN/Linknet); PSPNet pools a 1/8 feature map in
# 1, 2, 3 and 6 bins, so its input must be divisible by 6 * 8 = 48.
SIZE_MULTIPLE = {"Unet": 32, "FPN": 32, "Linknet": 32, "PSPNet": 48}

# Fields that do not change what is trained, left out of the experiment's identity.
NOT_IN_IDENTITY = {"description"}
# Fields added after experiments already existed: in the identity only when set, so the sha256
# of every experiment written before them (and the runs bound to it) stays what it was.
IDENTITY_WHEN_SET = {"max_images": None, "negatives": 0.0}


class _Strict(BaseModel):
    # strict: "3" is not an epoch count; extra="forbid": a typo is an error, not a default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# `dataset: coco`: the COCO 2017 layout that `flowops data coco` downloads (under FLOWOPS_COCO_DIR).
COCO_PATHS = {
    "train_annotations": "annotations/instances_train2017.json",
    "val_annotations": "annotations/instances_val2017.json",
    "train_images": "train2017",
    "val_images": "val2017",
}


class DatasetPaths(_Strict):
    """A COCO-format dataset on disk: image folders and `instances_*.json` per split."""

    root: str = Field(min_length=1, description="Dataset folder, relative to the repository root or absolute.")
    train_annotations: str = Field(
        "annotations/instances_train.json", min_length=1, description="Training split annotations, relative to root."
    )
    val_annotations: str = Field(
        "annotations/instances_val.json", min_length=1, description="Validation split annotations, relative to root."
    )
    train_images: str = Field("train", min_length=1, description="Folder of training images, relative to root.")
    val_images: str = Field("val", min_length=1, description="Folder of validation images, relative to root.")


class ExperimentSpec(_Strict):
    """One experiment: data, model and hyperparameters."""

    model_config = ConfigDict(
        title="flowops experiment", json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Short unique name; the MLflow run name."
    )
    description: str = Field(
        "", max_length=2000, description="Why this experiment exists (free text, not part of its identity)."
    )
    experiment_name: str = Field(
        "coco-segmentation", min_length=1, max_length=200, description="MLflow experiment that groups the runs."
    )
    # "coco": the COCO 2017 download managed by `flowops data coco` (its cache folder).
    dataset: Literal["coco"] | DatasetPaths = Field(
        "coco", description="'coco' for the downloaded COCO 2017, or a COCO-format folder."
    )
    # The COCO category names to segment; the model predicts these plus background.
    categories: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, max_length=80, description="COCO category names to segment (background is added)."
    )
    architecture: Architecture = Field("Unet", description="segmentation-models architecture.")
    backbone: Backbone = Field("resnet18", description="Encoder network (segmentation-models backbone name).")
    # null by default: runners and CI have no internet to fetch ImageNet weights.
    encoder_weights: Literal["imagenet"] | None = Field(
        None, description="Pretrained encoder weights: imagenet, or null to train from scratch."
    )
    image_size: int = Field(
        128, ge=32, le=2048, description="Square training size in pixels (divisible by 32; by 48 for PSPNet)."
    )
    epochs: int = Field(10, ge=1, le=10_000, description="Passes over the training split.")
    batch_size: int = Field(8, ge=1, le=1024, description="Images per training step.")
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Adam learning rate.")
    # Caps the steps per epoch: epochs x this is the training budget a policy can cap.
    max_batches_per_epoch: int | None = Field(
        None, ge=1, description="Stop each epoch after this many batches (null: the whole split)."
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for data order, augmentation and weights.")
    augment: bool = Field(True, description="Random flips, crops and colour jitter on training images.")
    max_images: int | None = Field(
        None, ge=1, description="Use at most this many images per split, chosen by the seed (null: every image)."
    )
    negatives: float = Field(
        0.0,
        ge=0,
        le=0.9,
        description="Fraction of each split's images that are background-only (no selected category); 0: none.",
    )

    @field_validator("categories")
    @classmethod
    def _unique(cls, value: list[str], info: Any) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"category {name!r} is listed twice")
            if "," in name:  # the MLproject parameter joins categories with commas
                raise ValueError(f"category {name!r} contains ',', which cannot be passed to MLflow")
            if name.lower() == "background":
                raise ValueError("'background' is added automatically; do not list it")
            seen.add(name)
        # Only the real COCO download fixes the category names; a custom COCO-format
        # dataset is checked against its own annotation file at training time.
        if info.data.get("dataset") == "coco":
            known = set(COCO_CATEGORIES.values())
            for name in value:
                if name not in known:
                    raise ValueError(f"category {name!r} is not a COCO category{did_you_mean(name, known)}")
        return value

    @field_validator("image_size")
    @classmethod
    def _size_fits_architecture(cls, value: int, info: Any) -> int:
        arch = info.data.get("architecture")
        multiple = SIZE_MULTIPLE.get(arch)
        if multiple and value % multiple:
            lower, upper = value - value % multiple, value - value % multiple + multiple
            hint = f"{lower} or {upper}" if lower >= 32 else f"{upper}"
            raise ValueError(f"{arch} needs a multiple of {multiple} (got {value}; try {hint})")
        return value

    @property
    def training_budget(self) -> int | None:
        """Batches the training may run (epochs x batch limit); None when unbounded."""
        return None if self.max_batches_per_epoch is None else self.epochs * self.max_batches_per_epoch

    @property
    def class_names(self) -> list[str]:
        """Output channels of the model, in order: background first."""
        return ["background", *self.categories]

    def normalised(self) -> dict:
        """Every field with defaults filled in, as JSON values: what defines the experiment."""
        data = self.model_dump(mode="json", exclude=NOT_IN_IDENTITY)
        for key, default in IDENTITY_WHEN_SET.items():
            if data.get(key) == default:
                del data[key]
        return data

    def sha256(self) -> str:
        """The experiment's identity: stable under key order, comments and defaults."""
        text = json.dumps(self.normalised(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def json_schema() -> dict:
    """JSON Schema for editors (`experiments/schema.json`)."""
    return ExperimentSpec.model_json_schema()


def load_experiment(path: str | Path, text: str | None = None) -> ExperimentSpec:
    """Read and validate one segmentation experiment file (or its `text`, e.g. from a git commit)."""
    doc = yamlfile.load(path, text)
    if not isinstance(doc.data, dict):
        raise ProblemsError([not_a_mapping(doc, "experiment settings")])
    try:
        return ExperimentSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise ProblemsError(problems_from(doc, exc, ExperimentSpec)) from None
