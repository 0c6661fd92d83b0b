"""The `flowops` command: parse, call, print, pick the exit code. Logic lives elsewhere.

Each command group is a module of this package; heavy modules (MLflow, TensorFlow) are
imported inside the commands that need them, so `flowops validate` stays fast on every PR push.
"""

from __future__ import annotations

import os

import click

from flowops import DISTRIBUTION, plugins
from flowops.cli import bundle, init, registry, serve, server, spec, train
from flowops.cli.base import FlowopsGroup
from flowops.verbosity import VERBOSE_ENV

# No network at run time but the tracking server and configured mirrors: MLflow's usage telemetry
# (on by default outside CI) would post to MLflow's servers from every flowops process and every
# training it starts, and its thread removes _MLFLOW_TELEMETRY_SESSION_ID while a request reads it
# (a KeyError that surfaced as "tracking server refused: INTERNAL_ERROR"). Set before MLflow is
# imported; a user who wants it sets MLFLOW_DISABLE_TELEMETRY=false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@click.group(cls=FlowopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, message="flowops %(version)s")
@click.option("--traceback", is_flag=True, help="Show the full stack trace of an error.")
@click.option("--verbose", is_flag=True, help=f"Show TensorFlow's and MLflow's own log lines (also {VERBOSE_ENV}=1).")
@click.pass_context
def cli(ctx: click.Context, traceback: bool, verbose: bool) -> None:
    """GitOps for machine-learning models: experiments as YAML, trained and promoted through git."""
    ctx.obj = {"traceback": traceback}
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # child processes (mlflow run) inherit it


for _module in (spec, train, bundle, registry, server, serve, init):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
for _plug_in in plugins.installed(plugins.COMMANDS):  # a template's own commands (segmentation: flowops data)
    for _command in _plug_in.load():
        cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="flowops")


if __name__ == "__main__":
    main()
