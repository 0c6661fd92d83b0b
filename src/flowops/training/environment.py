"""The environment `flowops train` hands a project's training: its names and the values allowed.

The engine sets and checks these; a template's trainer reads them (the segmentation trainer does:
`flowops.segmentation.training`). Defined here so that `flowops train` needs no template.
"""

from __future__ import annotations

from flowops.errors import FlowopsError

MIXED_PRECISION_ENV = "FLOWOPS_MIXED_PRECISION"  # 1 on, 0 off, unset: on with a GPU
WORKERS_ENV = "FLOWOPS_TRAIN_WORKERS"  # not FLOWOPS_WORKERS: that sets the tracking server's workers
WORKER_HOSTS_ENV = "FLOWOPS_WORKER_HOSTS"  # host:port of every worker, in index order (an Indexed Job)
INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job
PLACEMENT = ("TF_CONFIG", WORKER_HOSTS_ENV, INDEX_ENV, WORKERS_ENV)  # where a training's workers are


def check_precision_setting(setting: str | None) -> None:
    """FLOWOPS_MIXED_PRECISION is 1 (on), 0 (off) or unset/empty (on with a GPU): a one-line error otherwise."""
    if setting not in (None, "", "0", "1"):
        raise FlowopsError(
            f"environment {MIXED_PRECISION_ENV}: {setting!r} is not allowed: use 1 (on), 0 (off) or leave it "
            f"unset (on with a GPU)"
        )
