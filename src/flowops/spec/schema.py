"""One reader of experiment files for the whole engine, whatever the project trains.

`validate`, `train`, `report`, `promote`, `status`, `history`, `rollback` and the bundle
import all read experiments through a `Schema`: a template's (the segmentation template's by
default, found by entry point: flowops.spec.template), or the MLproject entry point's parameters
when flowops.yaml says `schema: mlproject`. A merge is
decided with the schema committed at that merge (`schema_at`), so history replays the same
whatever the working tree holds (that reading of git is `flowops.gitops.at_commit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError, ProblemsError
from flowops.spec.declaration import CODE_PATHS, ProjectConfig, load_project
from flowops.spec.generic import EntryPoint, entry_point, from_params, load_generic, with_rules
from flowops.spec.load import EXPERIMENTS_DIR, POLICY_FILE
from flowops.spec.template import SchemaPlugin, schema_plugin

NOT_CODE = (EXPERIMENTS_DIR, POLICY_FILE, "docs", ".github", ".gitignore", "LICENSE")


@dataclass(frozen=True)
class Schema:
    """How one repository (at one commit) reads its experiment files."""

    config: ProjectConfig
    point: EntryPoint | None = None  # the MLproject entry point, for schema: mlproject

    @classmethod
    def default(cls) -> Schema:
        """The built-in segmentation schema (a repository without flowops.yaml)."""
        return cls(ProjectConfig())

    @property
    def generic(self) -> bool:
        return self.point is not None

    @property
    def plugin(self) -> SchemaPlugin:
        """The template's schema (not for `schema: mlproject`); FlowopsError when it is not installed."""
        return schema_plugin(self.config.schema_)

    @property
    def model(self) -> str:
        return self.config.model

    def load(self, path: str | Path, text: str | None = None) -> Any:
        """The experiment in `path` (or `text`); ProblemsError listing every located problem."""
        if self.point is None:
            return self.plugin.load(path, text)
        return load_generic(path, self.point, text)

    def from_run(self, run: Any, experiment_name: str) -> Any:
        """The experiment a run in MLflow experiment `experiment_name` was given, from its logged
        parameters (and run name); FlowopsError when they make none."""
        return self.from_params(dict(run.data.params), str(run.info.run_name), experiment_name)

    def from_params(self, params: dict[str, str], run_name: str, experiment_name: str) -> Any:
        """The experiment logged parameters make (the run's name is the generic experiment's name)."""
        if self.point is None:
            plugin = self.plugin
            return plugin.from_params({k: v for k, v in params.items() if k in plugin.parameters})
        return from_params(self.point, params, run_name, experiment_name)

    def to_params(self, spec: Any) -> dict[str, str]:
        """The MLproject parameters an experiment of the template's schema is trained with."""
        return self.plugin.to_params(spec)

    def code_paths(self, names: list[str]) -> tuple[str, ...]:
        """The paths whose content is the training code, given the repository's top-level `names`."""
        if self.config.code is not None:
            return tuple(self.config.code)
        if self.point is None:
            return CODE_PATHS
        return tuple(n for n in names if n not in NOT_CODE and not n.endswith(".md")) or ("MLproject",)


def schema_of(root: str | Path = ".") -> Schema:
    """The schema of the working tree at `root`; ProblemsError when flowops.yaml or the MLproject is malformed."""
    config = load_project(root)
    if not config.generic:
        return Schema(config)
    return Schema(config, with_rules(entry_point(root, config.entry_point), config.parameters))


def schema_or_error(root: str | Path = ".") -> Schema:
    """schema_of for commands: its first problem as a one-line FlowopsError."""
    try:
        return schema_of(root)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
