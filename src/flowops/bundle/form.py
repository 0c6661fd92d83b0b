"""What a run bundle is: `bundle.json` (the run's record) beside `artifacts/` and `model/`.

The PR stage writes one with `flowops bundle export`; the trusted stage reads it with
`flowops bundle import`, which believes nothing in it that it can work out for itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FORMAT = 1
RECORD = "bundle.json"
FOLDERS = ("artifacts", "model")  # the only entries beside the record

# Lineage the import stage sets from git and the event; a bundle may repeat them, never differ.
LINEAGE = (
    "flowops.pr_number",
    "flowops.git_commit",
    "flowops.code_tree",
    "flowops.code_dirty",
    "flowops.experiment_file",
    "flowops.spec_sha256",
)
# What the trainer observed and may report (carried as the trainer's claims).
CLAIMS = (
    "flowops.git_branch",
    "flowops.dataset_fingerprint",
    "flowops.decoded_sha256",
    "flowops.hardware",
    "flowops.versions",
    "flowops.images_train",
    "flowops.images_val",
    "flowops.images_skipped",
    "flowops.skipped_annotations",
    "flowops.cache",
    "flowops.precision",
    "flowops.preprocess",
    "flowops.replicas",
    "flowops.workers",
    "flowops.global_batch_size",
    "flowops.failure",
    "flowops.eval_set",
    "flowops.eval_images",
)
CLAIM_PREFIXES = ("flowops.holder.",)  # the trainer's scoring of the alias holders on its data
KEPT_MLFLOW_TAGS = ("mlflow.runName", "mlflow.note.content")


# MLflow's own limits (mlflow.utils.validation), checked before anything is written: a value over
# them failed mid-import on PostgreSQL and left a FAILED run behind.
Key = Annotated[str, StringConstraints(min_length=1, max_length=250)]
ParamValue = Annotated[str, StringConstraints(max_length=6000)]
TagValue = Annotated[str, StringConstraints(max_length=8000)]


def is_claim(key: str) -> bool:
    return key in CLAIMS or key.startswith(CLAIM_PREFIXES)


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=250)
    value: float = Field(allow_inf_nan=False)  # NaN passes no comparison honestly; a diverged run says so
    step: int = Field(ge=0)
    timestamp: int = Field(ge=0)


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class LoggedModelRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["model"] = "model"
    step: int = Field(default=0, ge=0)


class Bundle(BaseModel):
    """bundle.json. Every file under artifacts/ and model/ is listed in `files` with its hash."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    experiment_name: str = Field(min_length=1, max_length=500)
    run_name: str = Field(min_length=1, max_length=250)
    status: Literal["FINISHED", "FAILED"]
    start_time: int = Field(ge=0)
    end_time: int | None = Field(default=None, ge=0)
    params: dict[Key, ParamValue] = Field(max_length=1000)
    tags: dict[Key, TagValue] = Field(max_length=1000)
    metrics: list[Metric] = Field(max_length=1_000_000)
    model: LoggedModelRecord | None = None
    files: dict[str, FileEntry] = Field(max_length=10_000)
