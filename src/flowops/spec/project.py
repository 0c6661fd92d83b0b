"""`flowops.yaml`: how a repository tells flowops what its MLflow Project is.

    # flowops.yaml
    schema: mlproject          # experiments are checked against the MLproject's parameters
    entry_point: main          # the MLproject entry point `flowops train` runs

Without the file, a repository is the built-in segmentation project (`schema: segmentation`):
experiments are the segmentation spec (flowops.spec.experiment), as before. Metric directions
belong in registry_policy.yaml (`metrics:`), beside the rules that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowops import yamlfile
from flowops.errors import ProblemsError
from flowops.spec.problems import problems_from

PROJECT_FILE = "flowops.yaml"


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", title="flowops project")

    schema_: Literal["segmentation", "mlproject"] = Field(
        "segmentation",
        alias="schema",
        description="How experiment files are checked: the built-in segmentation spec, or the MLproject's parameters.",
    )
    entry_point: str = Field("main", min_length=1, description="The MLproject entry point flowops train runs.")

    @property
    def generic(self) -> bool:
        return self.schema_ == "mlproject"


def load_project(root: str | Path = ".") -> ProjectConfig:
    """The repository's flowops.yaml, checked; the segmentation default when there is none."""
    path = Path(root) / PROJECT_FILE
    if not path.exists():
        return ProjectConfig()
    doc = yamlfile.load(path)
    data = doc.data if doc.data is not None else {}
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ProblemsError(problems_from(doc, exc, ProjectConfig)) from None
