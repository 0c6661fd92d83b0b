"""`flowops.yaml`: how a repository tells flowops what its MLflow Project is.

    # flowops.yaml
    schema: mlproject          # experiments are checked against the MLproject's parameters
    entry_point: main          # the MLproject entry point `flowops train` runs
    code: [MLproject, python_env.yaml, train.py]   # what decides how a model is trained
    model: model               # the name the entry point logs its model under
    evaluate: evaluate         # optional: the entry point that scores a holder on the same examples
    parameters:                # optional: what `validate` checks beyond the MLproject's types
      l1_ratio: {min: 0, max: 1}
      solver: {choices: [lbfgs, saga]}

Without the file, a repository is the built-in segmentation project (`schema: segmentation`):
experiments are the segmentation spec (flowops.segmentation.experiment), as before. Metric directions
belong in registry_policy.yaml (`metrics:`), beside the rules that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowops import yamlfile
from flowops.errors import ProblemsError
from flowops.spec.problems import problems_from
from flowops.suggest import did_you_mean

PROJECT_FILE = "flowops.yaml"
CODE_PATHS = ("src", "MLproject", "conda.yaml")  # the segmentation project's training code


class ParameterRule(BaseModel):
    """A constraint `flowops validate` checks on an entry point's parameter (bounds inclusive)."""

    model_config = ConfigDict(extra="forbid", title="parameter rule")

    min: float | None = Field(None, description="The smallest value allowed (numbers).")
    max: float | None = Field(None, description="The largest value allowed (numbers).")
    choices: list[str | int | float] | None = Field(None, min_length=1, description="The only values allowed.")


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", title="flowops project")

    schema_: str = Field(
        "segmentation",
        alias="schema",
        description=(
            "How experiment files are checked: mlproject (the MLproject's parameters), or the name of an "
            "installed template's schema (segmentation: flowops' own)."
        ),
    )
    entry_point: str = Field("main", min_length=1, description="The MLproject entry point flowops train runs.")
    code: list[Annotated[str, Field(min_length=1, pattern=r"^[^/][^:*?]*$")]] | None = Field(
        None,
        min_length=1,
        description=(
            "Repository paths whose content decides how a model is trained (its code tree, for "
            "require_same_code and stale experiments). Default: src, MLproject, conda.yaml for the "
            "segmentation schema; every top-level path but experiments/, docs, .github, registry_policy.yaml "
            "and *.md for mlproject."
        ),
    )
    model: str = Field("model", min_length=1, description="The name the entry point logs its model under.")
    evaluate: str | None = Field(
        None,
        min_length=1,
        description=(
            "An MLproject entry point that scores a model on the validation examples: parameters model_uri and "
            "output (and any of the experiment's it declares); it writes the model's per-example evidence to "
            "output (evaluation/per_example.npz's format). flowops train --holders runs it for each model holding "
            "an alias, so the candidate and the holders are compared on the candidate's data."
        ),
    )

    parameters: dict[str, ParameterRule] | None = Field(
        None,
        description=(
            "Constraints on the entry point's parameters, checked by flowops validate before anything trains: "
            "{name: {min, max, choices}}."
        ),
    )

    @field_validator("schema_")
    @classmethod
    def _installed(cls, value: str) -> str:
        from flowops import plugins
        from flowops.spec.template import GROUP

        known = ["mlproject", *sorted({e.name for e in plugins.installed(GROUP)})]
        if value not in known:
            raise ValueError(
                f"{value!r} is neither mlproject nor an installed template's schema{did_you_mean(value, known)}; "
                f"known here: {', '.join(known)}"
            )
        return value

    @property
    def generic(self) -> bool:
        return self.schema_ == "mlproject"


def load_project(root: str | Path = ".", text: str | None = None) -> ProjectConfig:
    """The repository's flowops.yaml (or its `text`, e.g. from a commit), checked; the segmentation
    default when there is none."""
    path = Path(root) / PROJECT_FILE
    if text is None and not path.exists():
        return ProjectConfig()
    doc = yamlfile.load(path, text)
    data = doc.data if doc.data is not None else {}
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ProblemsError(problems_from(doc, exc, ProjectConfig)) from None
