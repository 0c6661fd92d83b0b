"""What every command shares: the one error path, generated-file writing, common options."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flowops.errors import FlowopsError

BUG_HINT = "this is a bug in flowops: rerun with --traceback and report the output"

tracking_option = click.option(
    "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db)."
)


def repo_option(help_text: str = "The git repository.") -> Callable[[Any], Any]:
    """--repo: the git checkout a command reads (default: here)."""
    return click.option(
        "--repo", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True, help=help_text
    )


policy_option = click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path),
    default=Path("registry_policy.yaml"),
    show_default=True,
    help="The registry policy file.",
)


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
            click.echo(error_text(exc), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if type(exc).__module__.startswith("mlflow"):  # the tracking server said no, or did not answer
                if ctx.obj and ctx.obj.get("traceback"):
                    traceback.print_exc()
                click.echo(mlflow_message(exc), err=True)
                ctx.exit(1)
            if ctx.obj and ctx.obj.get("traceback"):
                traceback.print_exc()
            click.echo(f"error: {type(exc).__name__}: {exc} ({BUG_HINT})", err=True)
            ctx.exit(2)


def error_text(exc: FlowopsError) -> str:
    """What the user reads: one line (a line per problem for ProblemsError), none of them a workflow
    command, since messages quote file names, tag keys and values from untrusted bundles and runs."""
    from flowops.errors import ProblemsError
    from flowops.markdown import log_line

    if isinstance(exc, ProblemsError):
        return "\n".join(log_line(p) for p in exc.problems)
    return log_line(exc)


def mlflow_message(exc: Exception) -> str:
    """One line for an MLflow error, without credentials."""
    from flowops.redact import redact

    text = (getattr(exc, "message", None) or str(exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "Max retries exceeded" in text or "Connection refused" in text or "Failed to establish" in text:
        return f"tracking server {redact(os.environ.get('MLFLOW_TRACKING_URI', '?'))} cannot be reached: {first[:200]}"
    code = getattr(exc, "error_code", "")
    return f"tracking server refused: {code}: {first[:300]}" if code else f"MLflow: {first[:300]}"


def write_generated(path: Path, text: str, check: bool, command: str) -> None:
    """Write a file generated from the code, or (check) fail if the committed one differs."""
    if check:
        if not path.exists() or path.read_text() != text:
            raise FlowopsError(f"{path}: out of date; run '{command}' and commit the result")
        click.echo(f"ok: {path} is current")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}")
