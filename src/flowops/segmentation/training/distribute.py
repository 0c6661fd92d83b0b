"""How many devices and machines one training uses: one strategy object, made once per training.

- One device (a GPU, or the CPU): TensorFlow's default strategy.
- Several GPUs in one runner: `MirroredStrategy` over all of them.
- Several machines (or processes): `MultiWorkerMirroredStrategy`, configured from `TF_CONFIG`
  (set by `flowops train --workers N`, a Kubeflow TFJob, or built here from an Indexed Job's
  `JOB_COMPLETION_INDEX` and `FLOWOPS_WORKER_HOSTS`).
- `FLOWOPS_CPU_REPLICAS=N` (a testing knob, applied by flowops.segmentation.tfenv) splits the CPU into N
  logical devices, so the several-device path runs, and is tested, on a machine without GPUs.

The experiment's `batch_size` is per replica: each step trains on batch_size x replicas images
(the global batch), recorded on the run with the replica and worker counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from flowops.errors import FlowopsError
from flowops.training.environment import INDEX_ENV, WORKER_HOSTS_ENV


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker training (one worker: index 0 of 1)."""

    workers: int
    index: int

    @property
    def chief(self) -> bool:
        """Worker 0 logs to MLflow and writes the model; the others only train."""
        return self.index == 0


def tf_config_from_env() -> None:
    """TF_CONFIG for a pod of an Indexed Job: its index and the workers' addresses (kept if already set)."""
    hosts, index = os.environ.get(WORKER_HOSTS_ENV), os.environ.get(INDEX_ENV)
    if "TF_CONFIG" in os.environ or not hosts or index is None:
        return
    os.environ["TF_CONFIG"] = tf_config(hosts.split(","), int(index))


def tf_config(hosts: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def cluster() -> Cluster:
    """This process's worker index and the worker count, from TF_CONFIG (none: a single worker)."""
    tf_config_from_env()
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return Cluster(1, 0)
    try:
        config = json.loads(raw)
        workers = len(config["cluster"].get("worker", [])) + len(config["cluster"].get("chief", []))
        task = config["task"]
        # A "chief" task, where one is declared, is index 0; workers follow it.
        index = 0 if task["type"] == "chief" else int(task["index"]) + len(config["cluster"].get("chief", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FlowopsError(f"TF_CONFIG is not a TensorFlow cluster configuration ({exc}): {raw[:200]}") from None
    return Cluster(workers, index)


def strategy() -> Any:
    """The training's one strategy: build, compile, fit and evaluate all inside its scope.

    Call once per training, before any other TensorFlow work (MultiWorkerMirroredStrategy sets
    up the collective runtime and must come first).
    """
    import tensorflow as tf

    if cluster().workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in cpus])
    return tf.distribute.get_strategy()
