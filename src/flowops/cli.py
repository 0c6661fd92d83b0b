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
            if type(exc).__module__.startswith("mlflow"):  # the tracking server said no, or did not answer
                if ctx.obj and ctx.obj.get("traceback"):
                    traceback.print_exc()
                click.echo(mlflow_message(exc), err=True)
                ctx.exit(1)
            if ctx.obj and ctx.obj.get("traceback"):
                traceback.print_exc()
            click.echo(f"error: {type(exc).__name__}: {exc} ({BUG_HINT})", err=True)
            ctx.exit(2)


def mlflow_message(exc: Exception) -> str:
    """One line for an MLflow error, without credentials."""
    from flowops.server import redact

    text = (getattr(exc, "message", None) or str(exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "Max retries exceeded" in text or "Connection refused" in text or "Failed to establish" in text:
        import os

        return f"tracking server {redact(os.environ.get('MLFLOW_TRACKING_URI', '?'))} cannot be reached: {first[:200]}"
    code = getattr(exc, "error_code", "")
    return f"tracking server refused: {code}: {first[:300]}" if code else f"MLflow: {first[:300]}"


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

    write_generated(out, json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", check, "flowops schema")


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


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).")
@click.option("--env-manager", type=click.Choice(["local", "uv", "virtualenv", "conda"]), default="local", show_default=True,
              help="How MLflow provides the Python environment (local: this one).")
@click.option("--backend", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="Where the MLflow Project runs (kubernetes: a Job on a cluster).")
@click.option("--backend-config", type=click.Path(path_type=Path), help="Backend configuration file (kubernetes: context, repository, job template).")
@click.option("--run-id-file", type=click.Path(path_type=Path, dir_okay=False), help="Write the run id here (also when training fails), for the report step.")
def train(experiment: Path, tracking_uri: str | None, env_manager: str, backend: str, backend_config: Path | None, run_id_file: Path | None) -> None:
    """Train an experiment file through the MLflow Project and print the run.

    Environment: FLOWOPS_CACHE_DIR holds the decoded datasets (default .flowops/cache; on a
    runner, keep it outside the job's work folder); FLOWOPS_MIXED_PRECISION=1 or 0 turns mixed
    precision on or off (default: on when TensorFlow sees a GPU).
    """
    import os

    from flowops.model import MIXED_PRECISION_ENV, check_precision_setting
    from flowops.projects import TrainingFailed, run_experiment
    from flowops.tracking import resolve_uri, ui_hint

    if backend_config is not None and not backend_config.is_file():
        raise FlowopsError(f"{backend_config}: no such backend config file")
    check_precision_setting(os.environ.get(MIXED_PRECISION_ENV))  # before a run exists
    try:
        run = run_experiment(experiment, tracking_uri, env_manager, backend, str(backend_config) if backend_config else None)
    except TrainingFailed as exc:
        if run_id_file and exc.run_id:
            run_id_file.write_text(exc.run_id + "\n")
        raise
    if run_id_file:
        run_id_file.write_text(run.info.run_id + "\n")
    click.echo(f"run {run.info.run_id} {run.info.status}: {run.info.run_name}")
    click.echo(ui_hint(resolve_uri(tracking_uri), run))


@cli.command()
@click.option("--base", required=True, help="The PR's base commit (github.event.pull_request.base.sha).")
@click.option("--head", required=True, help="The PR's head commit (github.event.pull_request.head.sha).")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True, help="The git repository.")
@click.option("--retrain", is_flag=True, help="When training code changed, train every experiment (the PR's 'retrain' label).")
@click.option("--github-output", type=click.Path(path_type=Path, dir_okay=False), help="Also append experiments=/stale=/code_changed= to this file ($GITHUB_OUTPUT).")
def changed(base: str, head: str, repo: Path, retrain: bool, github_output: Path | None) -> None:
    """List the experiment files a PR adds or changes (JSON), and those its code change makes stale."""
    from flowops.changes import github_output as output_lines
    from flowops.changes import pr_changes

    result = pr_changes(repo, base, head, retrain)
    click.echo(json.dumps({"experiments": result.experiments, "stale": result.stale, "code_changed": result.code_changed}))
    if github_output:
        with github_output.open("a") as fh:
            fh.write(output_lines(result))


@cli.group()
def data() -> None:
    """Datasets: generate synthetic COCO-format data, fetch real COCO."""


@data.command("synth")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset to.")
@click.option("--images", type=click.IntRange(5, 100_000), default=120, show_default=True, help="Number of images (80% train, 20% val).")
@click.option("--size", default="160x120", show_default=True, help="Image size as WIDTHxHEIGHT.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same dataset).")
def data_synth(out: Path, images: int, size: str, seed: int) -> None:
    """Write a small synthetic COCO-format dataset (JPEGs + instances_{train,val}.json)."""
    from flowops.data.synth import generate

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise FlowopsError(f"--size: expected WIDTHxHEIGHT such as 160x120 (got {size!r})") from None
    if min(width, height) < 32:
        raise FlowopsError(f"--size: width and height must be >= 32 (got {size})")
    files = generate(out, images=images, width=width, height=height, seed=seed)
    click.echo(f"wrote {images} images to {out} ({', '.join(str(p) for p in files.values())})")


@cli.command()
@click.option("--check", is_flag=True, help="Only check that docs/reference.md is current; exit 1 if not.")
def docs(check: bool) -> None:
    """Write docs/reference.md: every experiment and policy field, every command and option."""
    from flowops.reference import REFERENCE, render

    write_generated(REFERENCE, render(), check, "flowops docs")


def _register_commands() -> None:
    from flowops import cli_registry, cli_server

    for command in cli_registry.COMMANDS + cli_server.COMMANDS:
        cli.add_command(command)


_register_commands()


@data.command("coco")
@click.option("--categories", required=True, help="Comma-separated COCO category names, e.g. cat,dog.")
@click.option("--splits", default="train2017,val2017", show_default=True, help="Comma-separated splits.")
@click.option("--dest", type=click.Path(path_type=Path, file_okay=False), envvar="FLOWOPS_COCO_DIR", default=Path.home() / ".cache" / "flowops" / "coco",
              show_default=True, help="Where the dataset goes ($FLOWOPS_COCO_DIR; experiments with dataset: coco read it there).")  # fmt: skip
@click.option("--mirror", default="http://images.cocodataset.org", show_default=True, help="Base URL with the COCO host's layout.")
@click.option("--max-images", type=click.IntRange(1), help="Cap per split (the lowest image ids: deterministic).")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel downloads.")
def data_coco(categories: str, splits: str, dest: Path, mirror: str, max_images: int | None, workers: int) -> None:
    """Download the COCO 2017 images holding some categories: parallel, resumable, verified."""
    from rich.console import Console

    from flowops.data import download as dl

    names = dl.check_categories([c.strip() for c in categories.split(",") if c.strip()])
    wanted_splits = [s.strip() for s in splits.split(",") if s.strip()]
    unknown = [s for s in wanted_splits if s not in dl.SPLITS]
    if unknown:
        raise FlowopsError(f"--splits: unknown split {unknown[0]!r}; expected {', '.join(dl.SPLITS)}")
    mirror = mirror.rstrip("/")
    files = dl.annotations(mirror, dest, wanted_splits)
    wanted = {split: dl.select(files[split], names, max_images) for split in wanted_splits}
    console = Console(stderr=True)
    progress = dl.Progress(console)
    try:
        outcome = dl.download_images(mirror, dest, wanted, workers, progress)
    finally:
        progress.stop()
    total = sum(len(v) for v in wanted.values())
    if not outcome.downloaded and not outcome.failed:
        click.echo(f"nothing to download: all {total} images are present and verified in {dest}")
    else:
        click.echo(f"downloaded {len(outcome.downloaded)} images ({outcome.bytes / 2**20:.1f} MiB); {len(outcome.present)} were already present")
    click.echo(f"dataset fingerprint {outcome.fingerprint} ({total - len(outcome.failed)} of {total} images, manifest {dest / 'manifest.json'})")
    if outcome.failed:
        for key, reason in sorted(outcome.failed.items()):
            click.echo(f"failed: {key}: {reason}", err=True)
        raise FlowopsError(f"{len(outcome.failed)} of {total} images failed; run the same command again to retry them")


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="flowops")


if __name__ == "__main__":
    sys.exit(main())
