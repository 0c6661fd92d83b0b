"""`flowops train`: run an experiment file through the MLflow Project.

The same MLproject that `mlflow run .` uses, with the parameters from the spec, so both
paths train identically. `--backend kubernetes --backend-config FILE` hands the run to
MLflow's Kubernetes backend (a Job on a GPU cluster) unchanged.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from flowops import tracking
from flowops.errors import FlowopsError
from flowops.spec.load import load_experiment
from flowops.spec.params import spec_to_params
from flowops.tracking import FAILURE_TAG


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
    """Train one experiment file; returns the finished MLflow Run. FlowopsError on failure."""
    import mlflow
    from mlflow.exceptions import ExecutionException, MlflowException

    spec = load_experiment(path)
    project = Path(project_dir)
    if not (project / "MLproject").is_file():
        raise FlowopsError(f"{project.resolve()}: no MLproject here; run flowops train from the repository root")
    uri = tracking.use(tracking_uri)
    params = spec_to_params(spec) | {"experiment_file": str(path)}
    experiment_id = tracking.ensure_experiment(spec.experiment_name, uri)
    started = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as staging:
        if backend == "kubernetes":
            project = stage_for_docker(project, backend_config, Path(staging))
        try:
            submitted = mlflow.projects.run(
                str(project),
                entry_point="main",
                parameters=params,
                experiment_id=experiment_id,
                run_name=spec.name,
                env_manager=env_manager,
                backend=backend,
                backend_config=backend_config,
                synchronous=True,
            )
        except (ExecutionException, MlflowException) as exc:
            message, run_id = failure_message(spec.name, exc)
            end_orphans(uri, experiment_id, spec.name, started, message)
            raise TrainingFailed(message, run_id) from None
        except ImportError as exc:  # a backend's client library is missing
            message = f"training {spec.name} failed: --backend {backend} needs {exc.name!r}: pip install 'flowops[k8s]'"
            end_orphans(uri, experiment_id, spec.name, started, message)
            raise FlowopsError(message) from None
    return mlflow.tracking.MlflowClient(uri).get_run(submitted.run_id)


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


def end_orphans(uri: str, experiment_id: str, name: str, since_ms: int, reason: str) -> None:
    """Runs this call created that MLflow left RUNNING when it gave up: end them FAILED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for run in client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and attributes.start_time >= {since_ms}"
    ):
        if run.info.run_name == name:
            client.set_tag(run.info.run_id, FAILURE_TAG, reason)
            client.set_terminated(run.info.run_id, "FAILED")


def failure_message(name: str, exc: Exception) -> tuple[str, str | None]:
    """('training <name> failed: <reason from the run's tag>', run id) where the run says why."""
    import re

    import mlflow

    text = str(exc)
    found = re.search(r"Run \(ID '([0-9a-f]+)'\) failed", text)
    if found:
        run = mlflow.tracking.MlflowClient().get_run(found.group(1))
        reason = run.data.tags.get(FAILURE_TAG, "see the run's output above")
        return f"training {name} failed (run {found.group(1)}): {reason}", found.group(1)
    first = getattr(exc, "message", text).strip().splitlines()
    return f"training {name} failed: {first[0] if first else type(exc).__name__}", None
