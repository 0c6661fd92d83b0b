"""The MLproject parameters: a flat, string-valued mirror of ExperimentSpec.

`mlflow run . -P epochs=1 ...` and `flowops train experiments/x.yaml` must mean the same
thing, so both go through `spec_to_params` / `spec_from_params`, and the trainer rebuilds
the same ExperimentSpec (same sha256) from the parameters it is given.
MLflow itself checks only `path` and `uri` types; the types here document intent and
`spec_from_params` enforces them.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from flowops.errors import FlowopsError
from flowops.segmentation.experiment import COCO_PATHS, ExperimentSpec

# Parameter -> (MLproject type, how an unset optional value is written).
PARAMETERS: dict[str, tuple[str, str | None]] = {
    "name": ("string", None),
    "description": ("string", None),
    "experiment_name": ("string", None),
    "categories": ("string", None),  # comma-separated, as in the original MLproject
    "architecture": ("string", None),
    "backbone": ("string", None),
    "encoder_weights": ("string", "none"),
    "image_size": ("int", None),
    "epochs": ("int", None),
    "batch_size": ("int", None),
    "learning_rate": ("float", None),
    "max_batches_per_epoch": ("int", "0"),  # 0: no limit
    "seed": ("int", None),
    "augment": ("string", None),  # true / false
    "max_images": ("int", "0"),  # 0: every image
    "negatives": ("float", None),
    "dataset": ("string", None),  # "coco", or a COCO-format folder
    "train_annotations": ("string", None),
    "val_annotations": ("string", None),
    "train_images": ("string", None),
    "val_images": ("string", None),
}
# Not part of the experiment: where the spec came from, for the lineage tags.
EXTRA_PARAMETERS = {"experiment_file": "string"}
_DATASET_KEYS = ("train_annotations", "val_annotations", "train_images", "val_images")


def spec_to_params(spec: ExperimentSpec) -> dict[str, str]:
    """Every parameter as the string MLflow passes on the command line."""
    data = spec.model_dump(mode="json")
    dataset = data.pop("dataset")
    out = {}
    for key, value in data.items():
        if key == "categories":
            out[key] = ",".join(value)
        elif value is None:
            out[key] = PARAMETERS[key][1] or ""
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    out["dataset"] = dataset if dataset == "coco" else dataset["root"]
    for key in _DATASET_KEYS:  # the paths the data are read from (for coco: the 2017 layout)
        out[key] = COCO_PATHS[key] if dataset == "coco" else dataset[key]
    return out


# `mlflow run .` without `-P name=...` names the run "adhoc"; categories have no default.
ADHOC_NAME = "adhoc"


def default_params() -> dict[str, str]:
    """Parameter defaults (what `mlflow run .` uses for anything not given with -P)."""
    spec = ExperimentSpec.model_construct(name=ADHOC_NAME, categories=[])
    params = spec_to_params(spec)
    del params["categories"]
    return params


def spec_from_params(raw: dict[str, str]) -> ExperimentSpec:
    """Rebuild the spec from parameter strings; FlowopsError names the bad parameter."""
    typed: dict[str, Any] = {}
    for key, text in raw.items():
        if key in _DATASET_KEYS or key == "dataset":
            continue
        kind, unset = PARAMETERS[key]
        try:
            typed[key] = _convert(key, kind, unset, text)
        except ValueError:
            raise FlowopsError(
                f"parameter {key}: must be {'an integer' if kind == 'int' else 'a number'} (got {text!r})"
            ) from None
    root = raw.get("dataset", "coco")
    typed["dataset"] = root if root == "coco" else {"root": root, **{k: raw[k] for k in _DATASET_KEYS if k in raw}}
    try:
        return ExperimentSpec.model_validate(typed)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise FlowopsError(f"parameter {where}: {err['msg']} (got {err.get('input')!r})") from None


def _convert(key: str, kind: str, unset: str | None, text: str) -> Any:
    if unset is not None and text.strip().lower() in (unset, "", "none", "null"):
        return None
    if key == "categories":
        return [c.strip() for c in text.split(",") if c.strip()]
    if key == "augment":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise FlowopsError(f"parameter augment: must be true or false (got {text!r})")
        return lowered in ("true", "1", "yes")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def argument_parser() -> argparse.ArgumentParser:
    """The trainer's command line: one `--name value` option per MLproject parameter."""
    parser = argparse.ArgumentParser(
        prog="python -m flowops.train", description="flowops trainer (MLproject entry point)"
    )
    defaults = default_params()
    for key in [*PARAMETERS, *EXTRA_PARAMETERS]:
        parser.add_argument(f"--{key}", default=defaults.get(key, ""))
    return parser


def parse_args(argv: list[str]) -> tuple[ExperimentSpec, str]:
    """(spec, experiment file) from the trainer's command line."""
    args = vars(argument_parser().parse_args(argv))
    experiment_file = args.pop("experiment_file")
    return spec_from_params(args), experiment_file
