"""The `flowops` command: parse, call, print, pick the exit code. Logic lives elsewhere.

Heavy modules (MLflow, TensorFlow) are imported inside the commands that need them, so
`flowops validate` stays fast on every PR push.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from flowops.errors import FlowopsError

SCHEMA_PATH = Path("experiments/schema.json")
BUG_HINT = "this is a bug in flowops: rerun with --traceback and report the output"


class FlowopsGroup(click.Group):
    """Turns expected failures into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except FlowopsError as exc:
            if ctx.obj and ctx.obj.get("traceback"):
                traceback.print_exc()
            click.echo(str(exc), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place that reports bugs
            if ctx.obj and ctx.obj.get("traceback"):
                traceback.print_exc()
            click.echo(f"error: {type(exc).__name__}: {exc} ({BUG_HINT})", err=True)
            ctx.exit(2)


@click.group(cls=FlowopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowops", message="flowops %(version)s")
@click.option("--traceback", is_flag=True, help="Show the full stack trace of an error.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """GitOps for machine-learning models: experiments as YAML, trained and promoted through git."""
    ctx.obj = {"traceback": traceback}


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check experiment files (default: experiments/*.yaml and registry_policy.yaml)."""
    from flowops.errors import ProblemsError
    from flowops.validate import default_paths, validate_paths

    files = list(paths) or default_paths()
    if not files:
        raise FlowopsError("nothing to validate: no experiments/*.yaml here and no paths given")
    specs, problems = validate_paths(files)
    if problems:
        raise ProblemsError(problems)
    click.echo(f"ok: {len(files)} file(s) valid ({len(specs)} experiment(s))")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=SCHEMA_PATH, show_default=True, help="Where to write the JSON Schema.")
@click.option("--check", is_flag=True, help="Only check that the file is current; exit 1 if not.")
def schema(out: Path, check: bool) -> None:
    """Write the experiment JSON Schema that editors use to validate and complete YAML."""
    from flowops.spec import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            raise FlowopsError(f"{out}: out of date; run 'flowops schema' and commit the result")
        click.echo(f"ok: {out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"wrote {out}")


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="flowops")


if __name__ == "__main__":
    sys.exit(main())
