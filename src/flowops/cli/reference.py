"""`flowops docs`: reference pages generated from the code, so they cannot drift from it."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import click
from pydantic import BaseModel

REFERENCE = Path("docs/reference.md")


def _type(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__} of " + ", ".join(_type(a) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if annotation is type(None):
        return "`null`"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if isinstance(value, BaseModel) or (
        isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel)
    ):
        return "see below"
    return f"`{value!r}`".replace("None", "null").replace("True", "true").replace("False", "false")


_BOUNDS = {
    "ge": ">=",
    "gt": ">",
    "le": "<=",
    "lt": "<",
    "min_length": "min length",
    "max_length": "max length",
    "pattern": "pattern",
}


def _constraints(field) -> str:
    """Allowed values from the field's pydantic constraints: '>= 1, <= 10000'."""
    found = []
    for item in field.metadata:
        for attr, word in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{word} `{value}`" if attr == "pattern" else f"{word} {value}")
    return ", " + ", ".join(found) if found else ""


def model_table(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type, allowed values | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(
            f"| `{field.alias or name}` | {_type(field.annotation)}{_constraints(field)} | {_default(field)} | {desc} |"
        )
    return lines


def cli_section(command: click.Command, path: str) -> list[str]:
    lines = [f"### `{path}`", "", inspect.cleandoc(command.help or ""), ""]
    params = [p for p in command.params if p.name not in ("help",)]
    if params:
        lines += ["| option | help |", "|---|---|"]
        for p in params:
            if isinstance(p, click.Argument):
                lines.append(f"| `{p.human_readable_name}` (argument) | |")
                continue
            shown = isinstance(p, click.Option) and p.show_default and p.default not in (None, False)
            default = f" (default: `{p.default}`)" if shown else ""
            help_text = (getattr(p, "help", None) or "").replace("|", "\\|")
            lines.append(f"| `{', '.join(p.opts)}` | {help_text}{default} |")
        lines.append("")
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            lines += cli_section(sub, f"{path} {name}")
    return lines


def render(cli: click.Group) -> str:
    """docs/reference.md for the command group `cli` (the `flowops` group: the caller hands it over,
    so this module never imports the one that imports it)."""
    from flowops.spec.declaration import ProjectConfig
    from flowops.spec.policy import Improvement, PerClass, RegistryPolicy, Regression, Target, Threshold
    from flowops.spec.template import schema_plugin

    template = []  # the default template's experiment files, as its schema plug-in documents them
    for heading, model in schema_plugin("segmentation").documented:
        template += [heading, "", *model_table(model), ""]

    out = [
        "# Reference",
        "",
        "Generated from the code by `flowops docs`; a test fails when it is stale.",
        "",
        "## The project (`flowops.yaml`, optional)",
        "",
        "Without it a repository is the segmentation project below. With `schema: mlproject`, an",
        "experiment file holds `name`, `description`, `experiment_name` and the MLproject entry",
        "point's parameters (docs/own-project.md).",
        "",
        *model_table(ProjectConfig),
        "",
        *template,
        "## Registry policy (`registry_policy.yaml`)",
        "",
        *model_table(RegistryPolicy),
        "",
    ]
    for model in (Target, Threshold, Improvement, Regression, PerClass):
        out += [f"`{model.__name__}`: {(model.__doc__ or '').strip()}", "", *model_table(model), ""]
    out += ["## Commands", ""]
    for name, command in sorted(cli.commands.items()):
        out += cli_section(command, f"flowops {name}")
    return "\n".join(out).rstrip() + "\n"
