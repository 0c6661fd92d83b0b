"""`flowops train`: run an experiment file through the MLflow Project.

The same MLproject that `mlflow run .` uses, with the parameters from the spec, so both
paths train identically. `--backend kubernetes --backend-config FILE` hands the run to
MLflow's Kubernetes backend (a Job on a GPU cluster) unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from flowops import tracking
from flowops.errors import FlowopsError
from flowops.gitops.at_commit import code_paths_at
from flowops.gitops.git import git
from flowops.gitops.lineage import project_packages, run_tags
from flowops.markdown import log_line
from flowops.spec.schema import schema_or_error
from flowops.tracking import FAILURE_TAG
from flowops.training import lease
from flowops.training.tail import Tail, stderr_tail
from flowops.verbosity import verbose

PYTHON_ENV = "FLOWOPS_PYTHON"  # the interpreter the MLproject runs: ${FLOWOPS_PYTHON:-python}


class TrainingFailed(FlowopsError):
    """Training ran and failed; `run_id` names the FAILED run when one was created."""

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id


def run_experiment(
    path: str | Path,
    tracking_uri: str | None = None,
    env_manager: str = "local",
    backend: str = "local",
    backend_config: str | None = None,
    project_dir: str | Path = ".",
):
    """Train one experiment file; returns the finished MLflow Run. FlowopsError on failure.

    Locally the run is created here (so its id is known whatever happens next, and its
    parameters are logged by the entry point as the spec has them, not shell-quoted); on
    Kubernetes MLflow creates it. Either way only that run is ever ended here: FAILED, first,
    then the reason tagged, each step on its own, so a tracking server that stops answering
    costs the tag, not the run's end.
    """
    import mlflow
    from mlflow.exceptions import ExecutionException, MlflowException
    from mlflow.tracking import MlflowClient

    project = Path(project_dir)
    if not (project / "MLproject").is_file():
        raise FlowopsError(f"{project.resolve()}: no MLproject here; run flowops train from the repository root")
    schema = schema_or_error(project)
    config = schema.config
    code_paths = code_paths_at(schema, project)
    if schema.generic:  # any MLflow Project: the experiment names its entry point's parameters
        spec: Any = schema.load(path)
        params = spec.mlflow_params()
        lineage = run_tags(spec.sha256(), str(path), None, project, code_paths, project_packages(project))
    else:
        spec = schema.load(path)
        params = schema.to_params(spec) | {"experiment_file": str(path)}
        lineage = {}  # the segmentation trainer records its own, richer lineage
    said = unshippable(project, code_paths)
    if said:
        print(f"warning: {said}", file=sys.stderr)
    uri = tracking.use(tracking_uri)
    client = MlflowClient(uri)
    experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
    remote = not tracking.is_embedded(uri)
    for gone, why in lease.abandoned_runs(client, experiment_id):  # trainings that died before ending their run
        said = settle(client, gone.info.run_id, why)
        name = log_line(gone.info.run_name)  # anyone's run: its name is not a workflow command
        print(f"flowops train: ended run {gone.info.run_id} ({name}) FAILED: {said}", file=sys.stderr)
    if env_manager == "local":  # the MLproject runs this interpreter, activated or not
        os.environ[PYTHON_ENV] = sys.executable
        # `python train.py` in a project's MLproject means this interpreter too (not whatever is first
        # on PATH, or nothing when flowops is called by its full path)
        here = os.path.dirname(sys.executable)
        if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
            os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")]).rstrip(os.pathsep)
    quiet_libraries()
    with tempfile.TemporaryDirectory() as staging:
        run_id = None
        if backend == "kubernetes":
            project = stage_for_docker(project, backend_config, Path(staging))
        else:
            run_id = _create_run(
                client, experiment_id, spec.name, project, lineage | lease.claim(remote), config.entry_point
            )
            if config.generic:  # a trainer of its own does not know flowops: the parameters are logged here
                from mlflow.entities import Param

                client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        tail = stderr_tail() if backend == "local" else contextlib.nullcontext(Tail())
        try:
            with tail as stderr_end, lease.Beat(client, run_id or "", remote and run_id is not None):
                submitted = mlflow.projects.run(
                    str(project),
                    entry_point=config.entry_point,
                    parameters=params,
                    experiment_id=experiment_id,
                    run_name=spec.name,
                    env_manager=env_manager,
                    backend=backend,
                    backend_config=backend_config,
                    run_id=run_id,
                    synchronous=True,
                )
        except KeyboardInterrupt:
            note = ""
            if run_id is None:
                run_id, note = _created_here(client, experiment_id, str(project))
            if run_id:
                settle(client, run_id, "interrupted")
            if note:
                print(f"flowops train: {note}", file=sys.stderr)
            raise
        except (ExecutionException, MlflowException, ImportError) as exc:
            if isinstance(exc, ImportError):  # a backend's client library is missing
                message = f"--backend {backend} needs {exc.name!r}: pip install 'flowops-gitops[k8s]'"
            else:
                message = _line(exc)
            ran = re.search(r"Run \(ID '([0-9a-f]+)'\) failed", message)  # the entry point failed: it says why
            run_id, note = run_id or (ran.group(1) if ran else None), ""
            if run_id is None:
                run_id, note = _created_here(client, experiment_id, str(project))
            if run_id is None:
                raise TrainingFailed(f"training {spec.name} failed: {message}{'; ' + note if note else ''}") from None
            # the entry point failed: the last line it wrote says why (a traceback's exception), unless
            # the project tagged a reason itself (settle keeps that one)
            reason = settle(client, run_id, (stderr_end.last_line() or None) if ran else message)
            raise TrainingFailed(f"training {spec.name} failed (run {run_id}): {reason}", run_id) from None
        run_id = submitted.run_id
    try:
        if config.generic and config.evaluate and backend == "local":  # the holders, on this run's examples
            from flowops.training.scoring import score_holders

            score_holders(client, project, config.evaluate, params, run_id)
        run = client.get_run(run_id)
        if run.info.status == "RUNNING":  # what synchronous mlflow.projects.run does on success
            client.set_terminated(run_id, "FINISHED")
            run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrainingFailed(
            f"training {spec.name}: run {run_id} ended, but the tracking server did not answer ({_line(exc)})", run_id
        ) from None
    return run


def unshippable(project: Path, paths: tuple[str, ...]) -> str:
    """Why a run trained from this tree could never ship (one line), or "": promote binds a merge only
    to runs of its committed code."""
    if git("rev-parse", "--verify", "--quiet", "HEAD", cwd=project) is None:
        return "no commit yet: this run can never ship (commit first, then train)"
    changed = (git("status", "--porcelain", "--", *paths, cwd=project) or "").splitlines()
    if changed:
        first = changed[0].split(maxsplit=1)[-1]  # "XY path" (git() strips the first line's lead)
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"uncommitted changes to the training code ({first}{more}): this run can never ship"
    return ""


def quiet_libraries() -> None:
    """MLflow's INFO lines and libraries' deprecation warnings only with --verbose, here and in the
    MLproject's process (which inherits the environment)."""
    if verbose():
        return
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")


def settle(client, run_id: str, reason: str | None) -> str:
    """End a failed run FAILED if it still says RUNNING (its end first, the reason tag second, each
    on its own); the reason it records. Never raises: a tracking server that does not answer is said."""
    try:
        run = client.get_run(run_id)
        status, recorded, unread = run.info.status, run.data.tags.get(FAILURE_TAG), False
    except Exception:  # unread: end it anyway (a failed training's run is FAILED whatever it says)
        status, recorded, unread = "RUNNING", None, True
    if status in ("RUNNING", "SCHEDULED"):
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception as exc:
            return (
                f"{reason or 'it failed'}; the tracking server did not answer ({_line(exc)}), "
                f"so run {run_id} may still show RUNNING"
            )
    if unread:  # a reason the training recorded is never overwritten because one read failed
        with contextlib.suppress(Exception):
            recorded = client.get_run(run_id).data.tags.get(FAILURE_TAG)
    if not recorded and reason:  # MLflow may have ended it FAILED already: the reason is still ours to tag
        try:
            client.set_tag(run_id, FAILURE_TAG, reason)
        except Exception:
            pass  # the run is ended; its reason is said here
    return recorded or reason or "see the run's output above"


def _line(exc: BaseException) -> str:
    """One short line: MLflow's "API request to URL failed with exception ... (Caused by X('why'))"
    becomes "PATH: why"."""
    lines = (getattr(exc, "message", None) or str(exc)).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    found = re.search(r"API request to \S*?(/api/[^\s?]+)\S* failed with exception .*?Caused by \w+\('([^']*)", text)
    return f"{found.group(1)}: {found.group(2)}" if found else text[:300]


def _create_run(
    client, experiment_id: str, name: str, project: Path, lineage: dict[str, str], entry: str = "main"
) -> str:
    """The run this training logs to, with the tags `mlflow run` would give it (and `lineage`)."""
    import getpass

    tags = {
        **lineage,
        "mlflow.runName": name,
        "mlflow.user": getpass.getuser(),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": str(project.resolve()),
        "mlflow.project.entryPoint": entry,
    }
    commit = git("rev-parse", "HEAD", cwd=project)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def _created_here(client, experiment_id: str, source: str) -> tuple[str | None, str]:
    """(the run MLflow created for this submission before it failed, or None; a note when it could not
    be looked for). Its source is our private staging folder, which no other submission shares."""
    try:
        runs = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.source.name` = '{source}'", max_results=1
        )
    except Exception as exc:  # never "no run": say that one may exist and still say RUNNING
        return None, f"could not look for the run it may have created ({_line(exc)}); it may still show RUNNING"
    return (runs[0].info.run_id if runs else None), ""


def stage_for_docker(project: Path, backend_config: str | None, staging: Path) -> Path:
    """A copy of the tracked files whose MLproject uses `docker_env` (Kubernetes needs an image).

    The image comes from the backend config's `flowops-base-image` key: an image with the
    `train` (or `gpu`) extra installed, built by the team from this repository.
    """
    import json
    import shutil

    from flowops.gitops.git import git

    config = json.loads(Path(backend_config).read_text()) if backend_config else {}
    image = config.get("flowops-base-image")
    if not image:
        raise FlowopsError(
            f"{backend_config}: 'flowops-base-image' is required for --backend kubernetes (the image MLflow builds on)"
        )
    files = (git("ls-files", cwd=project) or "").splitlines()
    if not files:
        raise FlowopsError(f"{project.resolve()}: not a git checkout; --backend kubernetes ships the tracked files")
    for name in files:
        if (project / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project / name, staging / name)
    text = (
        (project / "MLproject")
        .read_text()
        .replace("conda_env: conda.yaml", f"docker_env:\n  image: {json.dumps(image)}")
    )
    (staging / "MLproject").write_text(text)
    return staging
