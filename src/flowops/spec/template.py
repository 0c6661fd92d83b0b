"""A template's schema plug-in: how the engine reads the experiment files of a project it does not know.

A repository without flowops.yaml (or with `schema: segmentation`) is the segmentation template's;
its schema comes from the entry point `segmentation` of the group `flowops.schema`, never from an
import. A template registers a `SchemaPlugin`; with `schema: mlproject` the engine needs none (the
MLproject entry point's parameters are the schema: flowops.spec.generic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError, Problem

GROUP = "flowops.schema"


@dataclass(frozen=True)
class SchemaPlugin:
    """What the engine asks of a template's experiment files."""

    load: Callable[[str | Path, str | None], Any]  # the experiment in a file (or text); ProblemsError
    from_params: Callable[[dict[str, str]], Any]  # the experiment logged parameters rebuild; FlowopsError
    to_params: Callable[[Any], dict[str, str]]  # the MLproject parameters it is trained with
    parameters: frozenset[str]  # the parameters an experiment logs
    extra_parameters: frozenset[str]  # logged beside them, not part of the experiment (its file)
    json_schema: Callable[[], dict]  # experiments/schema.json (`flowops schema`)
    # `flowops validate`'s checks against the policy: of one experiment (its path, its value, the
    # policy), and of them all (the policy's path, the policy, every experiment)
    experiment_problems: Callable[[Path, Any, Any], list[Problem]]
    policy_problems: Callable[[Path, Any, list[Any]], list[Problem]]
    documented: tuple[tuple[str, type], ...] = ()  # (heading, pydantic model) for docs/reference.md


def schema_plugin(name: str) -> SchemaPlugin:
    """The installed template `name`'s schema; FlowopsError when no template of that name is installed."""
    from flowops import plugins

    found = [e for e in plugins.installed(GROUP) if e.name == name]
    if not found:
        raise FlowopsError(
            f"the {name} template is not installed (no entry point {name!r} in the group {GROUP}): "
            f"install it, or declare `schema: mlproject` in flowops.yaml (docs/own-project.md)"
        )
    plugin = found[0].load()
    if not isinstance(plugin, SchemaPlugin):
        raise FlowopsError(f"entry point {name!r} of {GROUP} ({found[0].value}) is not a SchemaPlugin")
    return plugin
