"""The segmentation template's metrics, as the engine needs to know them (entry point `segmentation`
of `flowops.metrics`): what its trainer logs, which way is better, the values each can take."""

from __future__ import annotations

from flowops.spec.vocabulary import Vocabulary

PRIMARY = "val_miou"  # dataset-level foreground mean IoU (light: `flowops validate` reads this module)

VOCABULARY = Vocabulary(
    directions={
        "val_iou": "max",
        "val_miou": "max",
        "val_fscore": "max",
        "val_f1": "max",
        "val_loss": "min",
        "iou": "max",
        "f1": "max",
        "loss": "min",
    },
    # an IoU or F-score outside [0, 1] can never be reached
    bounds={
        "val_iou": (0.0, 1.0),
        "val_miou": (0.0, 1.0),
        "val_fscore": (0.0, 1.0),
        "val_f1": (0.0, 1.0),
        "iou": (0.0, 1.0),
        "f1": (0.0, 1.0),
        "val_loss": (0.0, None),
        "loss": (0.0, None),
    },
    primary=PRIMARY,
    primary_examples="validation images",
    per_class="val_iou.",  # validation IoU of each category
    per_class_name="IoU",
    unguarded=("background",),
    unguarded_why="background IoU rewards predicting nothing",
    compared=("val_miou", "val_fscore", "val_iou", "val_f1", "val_loss"),
    training=("iou", "f1", "loss"),
    curves=("iou", "loss"),
)
