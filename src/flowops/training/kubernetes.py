"""Multi-worker training on a Kubernetes cluster, through the engines that already run it there.

`flowops train EXP --backend kubernetes --workers N --backend-config FILE` renders, and checks
offline against the Kubernetes and Kubeflow API models, either

- an Indexed Job of N pods plus a headless Service (`"operator": "job"`, the default): each pod
  builds its TF_CONFIG from its completion index (JOB_COMPLETION_INDEX, set by Kubernetes) and
  the workers' stable host names (FLOWOPS_WORKER_HOSTS, set here), or
- a Kubeflow TFJob (`"operator": "tfjob"`), whose operator sets TF_CONFIG itself,

and writes them to a folder for `kubectl apply -f` or a GitOps tool (Argo CD, Flux). MLflow's
own Kubernetes backend runs one pod per run, so it keeps the single-worker case. Pod 0 is the
chief: it creates the MLflow run (tracking address and credentials from a Secret), logs and
registers nothing more than a single-worker training would.

Backend config keys (JSON): `image` (required: this repository at the commit, flowops installed),
`secret` (required: a Secret with MLFLOW_TRACKING_URI and credentials), `namespace` ("default"),
`operator` ("job" or "tfjob"), `gpus-per-worker` (0), `port` (2222), `service-account`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flowops.errors import FlowopsError
from flowops.spec.template import schema_plugin

OPERATORS = ("job", "tfjob")
KEYS = {"image", "secret", "namespace", "operator", "gpus-per-worker", "port", "service-account"}
SINGLE_WORKER_KEYS = {"kube-context", "repository-uri", "kube-job-template-path", "flowops-base-image"}


def read_config(path: str | Path) -> dict[str, Any]:
    """The backend config's multi-worker keys, checked; FlowopsError naming the key and the rule."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FlowopsError(f"{path}: not a readable JSON backend config ({exc})") from None
    if not isinstance(config, dict):
        raise FlowopsError(f"{path}: the backend config must be a JSON object")
    unknown = sorted(set(config) - KEYS - SINGLE_WORKER_KEYS)
    if unknown:
        raise FlowopsError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    for key in ("image", "secret"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise FlowopsError(f"{path}: {key!r} is required for --workers on Kubernetes (a non-empty string)")
    if config.setdefault("operator", "job") not in OPERATORS:
        raise FlowopsError(f"{path}: operator {config['operator']!r} must be one of {', '.join(OPERATORS)}")
    for key, default in (("gpus-per-worker", 0), ("port", 2222)):
        value = config.setdefault(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (key == "port" and not value):
            raise FlowopsError(
                f"{path}: {key} {value!r} must be a whole number" + (" above 0" if key == "port" else "")
            )
    config.setdefault("namespace", "default")
    return config


def job_name(spec: Any) -> str:
    """A DNS-1123 name from the experiment and its spec hash: short enough for `<name>-<index>` host names."""
    slug = re.sub(r"[^a-z0-9-]+", "-", spec.name.lower()).strip("-")[:30].strip("-") or "exp"
    return f"flowops-{slug}-{spec.sha256()[:8]}"


def command(spec: Any, experiment_file: str) -> list[str]:
    params = schema_plugin("segmentation").to_params(spec) | {"experiment_file": experiment_file}
    return ["python", "-m", "flowops.train", *[x for key, value in params.items() for x in (f"--{key}", value)]]


def render(spec: Any, experiment_file: str, workers: int, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifests that train `spec` on `workers` pods."""
    name, namespace, port = job_name(spec), config["namespace"], config["port"]
    labels = {"app.kubernetes.io/name": "flowops", "app.kubernetes.io/instance": name}
    container: dict[str, Any] = {
        "name": "tensorflow" if config["operator"] == "tfjob" else "worker",
        "image": config["image"],
        "command": command(spec, experiment_file),
        "envFrom": [{"secretRef": {"name": config["secret"]}}],
        "ports": [{"name": "tfjob-port" if config["operator"] == "tfjob" else "tf", "containerPort": port}],
    }
    if config["gpus-per-worker"]:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(config["gpus-per-worker"])}}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if config.get("service-account"):
        pod["serviceAccountName"] = config["service-account"]
    metadata = {"name": name, "namespace": namespace, "labels": labels}
    if config["operator"] == "tfjob":
        return [
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "TFJob",
                "metadata": metadata,
                "spec": {
                    "runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "None"},
                    "tfReplicaSpecs": {
                        "Worker": {
                            "replicas": workers,
                            "restartPolicy": "Never",
                            "template": {"metadata": {"labels": labels}, "spec": pod},
                        }
                    },
                },
            }
        ]
    hosts = ",".join(f"{name}-{index}.{name}:{port}" for index in range(workers))
    container["env"] = [{"name": "FLOWOPS_WORKER_HOSTS", "value": hosts}]
    pod["subdomain"] = name  # with the headless Service: pod i answers at <name>-i.<name>
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "clusterIP": "None",
            "selector": labels,
            "publishNotReadyAddresses": True,  # workers find each other while starting
            "ports": [{"name": "tf", "port": port, "targetPort": port}],
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimit": 0,  # a worker that fails fails the training: the chief ends the run FAILED
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [service, job]


MODELS = {
    ("v1", "Service"): "V1Service",
    ("batch/v1", "Job"): "V1Job",
    ("kubeflow.org/v1", "TFJob"): "KubeflowOrgV1TFJob",
}


def check(manifest: dict[str, Any]) -> None:
    """Offline validation: the manifest read into the API's own models (required fields, types) and
    written back must come out unchanged (a misspelt or unknown field would be dropped)."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key not in MODELS:
        raise FlowopsError(f"no API model for {key[1]} {key[0]}")
    if key[1] == "TFJob":
        from kubeflow.training.api_client import ApiClient
    else:
        from kubernetes.client import ApiClient

    class Response:
        data = json.dumps(manifest)

    client = ApiClient()
    try:
        again = client.sanitize_for_serialization(client.deserialize(Response(), MODELS[key]))
    except (ValueError, TypeError) as exc:
        raise FlowopsError(f"{key[1]} {manifest['metadata'].get('name')}: {exc}") from None
    if again != manifest:
        raise FlowopsError(
            f"{key[1]} {manifest['metadata'].get('name')}: fields the API does not know: {_diff(manifest, again)}"
        )


def _diff(given: Any, kept: Any, path: str = "") -> str:
    if isinstance(given, dict) and isinstance(kept, dict):
        for key in given:
            if key not in kept:
                return f"{path}.{key}".lstrip(".")
            found = _diff(given[key], kept[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(given, list) and isinstance(kept, list):
        for index, (a, b) in enumerate(zip(given, kept, strict=False)):
            found = _diff(a, b, f"{path}[{index}]")
            if found:
                return found
    elif given != kept:
        return f"{path.lstrip('.')} ({given!r})"
    return ""


def write(manifests: list[dict[str, Any]], folder: Path) -> Path:
    """Checked manifests into folder/<name>.yaml (one file, several documents); its path."""
    import yaml

    for manifest in manifests:
        check(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{manifests[-1]['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path
