"""CLI commands for training: train (through the MLflow Project) and changed (what a PR trains)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowops.cli.base import repo_option
from flowops.errors import FlowopsError


@click.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db).")
@click.option(
    "--env-manager",
    type=click.Choice(["local", "uv", "virtualenv", "conda"]),
    default="local",
    show_default=True,
    help="How MLflow provides the Python environment (local: this one).",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    show_default=True,
    help="Where the MLflow Project runs (kubernetes: a Job on a cluster).",
)
@click.option(
    "--backend-config",
    type=click.Path(path_type=Path),
    help="Backend configuration file (kubernetes: context, repository, job template).",
)
@click.option(
    "--run-id-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the run id here (also when training fails), for the report step.",
)
@click.option(
    "--holders",
    "holders_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Models holding the aliases (flowops holders export): scored on this run's validation images too.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Training processes (MultiWorkerMirroredStrategy): here, N processes on loopback; "
    "with --backend kubernetes, N pods (an Indexed Job or a TFJob, written to --manifests).",
)
@click.option(
    "--manifests",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".flowops/k8s"),
    show_default=True,
    help="Where --backend kubernetes --workers N writes its manifests (for kubectl apply -f or a GitOps tool).",
)
def train(
    experiment: Path,
    tracking_uri: str | None,
    env_manager: str,
    backend: str,
    backend_config: Path | None,
    run_id_file: Path | None,
    holders_dir: Path | None,
    workers: int,
    manifests: Path,
) -> None:
    """Train an experiment file through the MLflow Project and print the run.

    Environment: FLOWOPS_CACHE_DIR holds the decoded datasets (default .flowops/cache; on a
    runner, keep it outside the job's work folder); FLOWOPS_MIXED_PRECISION=1 or 0 turns mixed
    precision on or off (default: on when TensorFlow sees a GPU).
    """
    import os

    from flowops import tracking
    from flowops.tracking import resolve_uri, ui_hint
    from flowops.training.environment import MIXED_PRECISION_ENV, PLACEMENT, WORKERS_ENV, check_precision_setting
    from flowops.training.launch import TrainingFailed, run_experiment
    from flowops.training.lease import lease_s

    if backend_config is not None and not backend_config.is_file():
        raise FlowopsError(f"{backend_config}: no such backend config file")
    if holders_dir is not None:
        from flowops.training.scoring import HOLDERS_ENV

        if not (holders_dir / "holders.json").is_file():
            raise FlowopsError(f"{holders_dir}: no holders.json; export it with flowops holders export")
        os.environ[HOLDERS_ENV] = str(holders_dir.resolve())  # the MLproject run inherits it
    check_precision_setting(os.environ.get(MIXED_PRECISION_ENV))  # before a run exists
    lease_s()  # FLOWOPS_RUN_LEASE_S checked before a run exists
    tracking.bounded_http(training=True)  # a server that is down: about a minute per request, said
    if workers > 1 and backend == "kubernetes":
        _kubernetes_workers(experiment, backend_config, workers, manifests)
        return
    # One training on this machine: a cluster placement left in the environment (a stale
    # TF_CONFIG) would make the trainer wait for peers that never come.
    for name in PLACEMENT:
        os.environ.pop(name, None)
    if workers > 1:
        os.environ[WORKERS_ENV] = str(workers)  # the MLproject's entry point starts the workers
    try:
        run = run_experiment(
            experiment, tracking_uri, env_manager, backend, str(backend_config) if backend_config else None
        )
    except TrainingFailed as exc:
        if run_id_file and exc.run_id:
            run_id_file.write_text(exc.run_id + "\n")
        raise
    if run_id_file:
        run_id_file.write_text(run.info.run_id + "\n")
    click.echo(f"run {run.info.run_id} {run.info.status}: {run.info.run_name}")
    click.echo(ui_hint(resolve_uri(tracking_uri), run))


def _kubernetes_workers(experiment: Path, backend_config: Path | None, workers: int, folder: Path) -> None:
    """Render, check and write the multi-worker manifests; the chief pod creates the run when applied."""
    from flowops.spec.template import schema_plugin
    from flowops.training import kubernetes

    if backend_config is None:
        raise FlowopsError("--backend kubernetes --workers N needs --backend-config (image, secret, operator)")
    config = kubernetes.read_config(backend_config)
    spec = schema_plugin("segmentation").load(experiment, None)  # the template's trainer spreads over pods
    path = kubernetes.write(kubernetes.render(spec, str(experiment), workers, config), folder)
    click.echo(f"wrote {path}: {workers} workers ({config['operator']}) for {spec.name}")
    click.echo(f"submit with: kubectl apply -f {path}   (pod 0 creates the MLflow run)")


@click.command()
@click.option("--base", required=True, help="The PR's base commit (github.event.pull_request.base.sha).")
@click.option("--head", required=True, help="The PR's head commit (github.event.pull_request.head.sha).")
@repo_option()
@click.option(
    "--retrain", is_flag=True, help="When training code changed, train every experiment (the PR's 'retrain' label)."
)
@click.option(
    "--github-output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append experiments=/stale=/code_changed= to this file ($GITHUB_OUTPUT).",
)
@click.option(
    "--max-experiments",
    type=click.IntRange(min=1),
    default=20,  # one GPU job each
    show_default=True,
    envvar="FLOWOPS_MAX_EXPERIMENTS",
    help="Refuse a PR that would train more experiments than this (each is a GPU job).",
)
def changed(base: str, head: str, repo: Path, retrain: bool, github_output: Path | None, max_experiments: int) -> None:
    """List the experiment files a PR adds or changes (JSON), and those its code change makes stale."""
    from flowops.gitops.changes import github_output as output_lines
    from flowops.gitops.changes import over_cap, pr_changes

    result = pr_changes(repo, base, head, retrain)
    too_many = over_cap(result, max_experiments)
    if too_many:
        raise FlowopsError(too_many)
    click.echo(
        json.dumps({"experiments": result.experiments, "stale": result.stale, "code_changed": result.code_changed})
    )
    if github_output:
        with github_output.open("a") as fh:
            fh.write(output_lines(result))


COMMANDS = [train, changed]
