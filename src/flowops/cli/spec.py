"""CLI commands for the files people write: validate, schema, docs (light: no MLflow, no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowops.cli.base import write_generated
from flowops.errors import FlowopsError

SCHEMA_PATH = Path("experiments/schema.json")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--annotations",
    is_flag=True,
    help="Also print each problem as a GitHub Actions ::error annotation (shown on the PR's diff).",
)
def validate(paths: tuple[Path, ...], annotations: bool) -> None:
    """Check experiment files (default: experiments/*.yaml and registry_policy.yaml)."""
    from flowops.errors import ProblemsError
    from flowops.spec.load import default_paths
    from flowops.spec.validate import comparison_warnings, validate_paths

    files = list(paths) or default_paths()
    if not files:
        raise FlowopsError("nothing to validate: no experiments/*.yaml here and no paths given")
    specs, problems = validate_paths(files)
    if problems:
        if annotations:
            for problem in problems:
                click.echo(annotation(problem))
        raise ProblemsError(problems)
    for warning in comparison_warnings():
        click.echo(annotation(warning, "warning") if annotations else f"warning: {warning}", err=not annotations)
    click.echo(f"ok: {len(files)} file(s) valid ({len(specs)} experiment(s))")


def annotation(problem, level: str = "error") -> str:
    """`::error file=F,line=L,title=T::message` (or ::warning) with GitHub's escaping of properties and message."""

    def prop(text: str) -> str:
        return (
            text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")
        )

    message = (f"{problem.where}: " if problem.where else "") + problem.message
    message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    line = f",line={problem.line}" if problem.line else ""
    return f"::{level} file={prop(problem.path)}{line},title={prop('flowops validate')}::{message}"


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=SCHEMA_PATH,
    show_default=True,
    help="Where to write the JSON Schema.",
)
@click.option("--check", is_flag=True, help="Only check that the file is current; exit 1 if not.")
def schema(out: Path, check: bool) -> None:
    """Write the experiment JSON Schema that editors use to validate and complete YAML."""
    from flowops.spec.template import schema_plugin

    made = schema_plugin("segmentation").json_schema()  # the template a repository without flowops.yaml is
    write_generated(out, json.dumps(made, indent=2, sort_keys=True) + "\n", check, "flowops schema")


@click.command()
@click.option("--check", is_flag=True, help="Only check that docs/reference.md is current; exit 1 if not.")
def docs(check: bool) -> None:
    """Write docs/reference.md: every experiment and policy field, every command and option."""
    from flowops.cli.reference import REFERENCE, render

    root = click.get_current_context().find_root().command
    assert isinstance(root, click.Group)
    write_generated(REFERENCE, render(root), check, "flowops docs")


COMMANDS = [validate, schema, docs]
