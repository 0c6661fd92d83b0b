"""CLI commands for run bundles: export (untrusted PR stage) and import (trusted stage)."""

from __future__ import annotations

from pathlib import Path

import click

from flowops.cli.base import repo_option, tracking_option


@click.group()
def bundle() -> None:
    """Carry a training run from the PR stage, which holds no credential, to the tracking server."""


@bundle.command("export")
@click.option("--run", "run_id", required=True, help="The run to bundle (flowops train --run-id-file wrote it).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="A new folder.")
@tracking_option
def export_command(run_id: str, out: Path, tracking_uri: str | None) -> None:
    """Write a run of the local store as a bundle: bundle.json, artifacts/ and model/."""
    from mlflow.tracking import MlflowClient

    from flowops.bundle.export import export_run
    from flowops.tracking import use

    written = export_run(MlflowClient(use(tracking_uri)), run_id, out)
    click.echo(f"wrote {out}: run {run_id} {written.status}, {len(written.files)} file(s)")


@bundle.command("import")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--experiment-file", required=True, help="The experiment file the PR stage trained (from the matrix).")
@click.option("--head-sha", required=True, help="The approved commit (github.event.pull_request.head.sha).")
@click.option("--pr", "pr_number", required=True, help="The pull request number (from the event).")
@repo_option("The base repository's checkout, with the PR head fetched.")
@tracking_option
@click.option("--run-id-file", type=click.Path(path_type=Path, dir_okay=False), help="Write the new run's id here.")
@click.option(
    "--max-file-bytes", type=click.IntRange(min=1), default=2 << 30, show_default=True, help="Refuse a larger file."
)
@click.option(
    "--max-total-bytes", type=click.IntRange(min=1), default=8 << 30, show_default=True, help="Refuse a larger bundle."
)
def import_command(
    folder: Path,
    experiment_file: str,
    head_sha: str,
    pr_number: str,
    repo: Path,
    tracking_uri: str | None,
    run_id_file: Path | None,
    max_file_bytes: int,
    max_total_bytes: int,
) -> None:
    """Check a run bundle and import it as a run, with lineage from git and the event, not the bundle."""
    import signal

    from mlflow.tracking import MlflowClient

    from flowops.bundle.check import Limits, check_bundle, facts_from_git
    from flowops.bundle.code import code_from_git
    from flowops.bundle.importer import end_failed, import_bundle
    from flowops.bundle.mlmodel import check_model
    from flowops.cancel import run_until_signalled
    from flowops.gitops.at_commit import code_paths_at
    from flowops.hashing import model_digest
    from flowops.markdown import log_line
    from flowops.tracking import use

    facts = facts_from_git(repo, head_sha, experiment_file, pr_number)
    checked = check_bundle(folder, facts, Limits(max_file_bytes=max_file_bytes, max_total_bytes=max_total_bytes))
    check_model(folder, set(checked.files))  # the MLmodel's loader, paths and requirements (#32.18)
    code = code_from_git(folder, list(checked.files), repo, facts.head_sha, code_paths_at(facts.schema, repo, head_sha))
    digest = model_digest(folder / "model") if (folder / "model").is_dir() else None
    uri = use(tracking_uri)
    client = MlflowClient(uri)
    started: list[str] = []

    def cleanup(signum: int) -> None:  # a cancelled job: the run it had begun ends FAILED, not RUNNING
        for run_id in started:
            end_failed(client, run_id, f"import of the run bundle cancelled by {signal.Signals(signum).name}")

    run_id = run_until_signalled(
        lambda cancel: import_bundle(client, uri, folder, checked, facts, cancel, started, digest), cleanup
    )
    if run_id_file:
        run_id_file.write_text(run_id + "\n")
    click.echo(
        f"imported run {run_id} ({checked.status}) for {experiment_file} at {facts.head_sha[:12]}, PR #{pr_number}"
    )
    click.echo(log_line(code.summary()))


COMMANDS = [bundle]
