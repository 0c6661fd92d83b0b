"""TensorFlow's environment, set before TensorFlow is imported, and quiet by default.

segmentation-models 1.0.1 needs tf.keras, which TF 2.21 provides as tf-keras when
TF_USE_LEGACY_KERAS=1. TensorFlow's C++ runtime logs through absl before anything can
configure it (CUDA probing on a CPU machine, "All log messages before absl::InitializeLog()",
cuFFT/cuDNN factory registration): TF_CPP_MIN_LOG_LEVEL does not reach those lines, so the
import itself runs with the process's stdout and stderr pointed at /dev/null. A flowops user
sees them with `flowops --verbose` or FLOWOPS_VERBOSE=1; progress and results print either way,
and a failed import still raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from flowops.verbosity import verbose

_imported = False


@contextlib.contextmanager
def muted_output() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null (C++ libraries write there directly), unless verbose."""
    if verbose():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def configure_tensorflow() -> None:
    """Set TF's environment and import it (quietly) once; call before importing TensorFlow."""
    global _imported
    os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "2")  # lines logged after start-up
    if _imported:
        return
    with muted_output():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe logs here on a machine without a GPU
    _split_cpu(tf)
    _imported = True
    if not verbose():
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)


CPU_REPLICAS_ENV = "FLOWOPS_CPU_REPLICAS"


def cpu_replicas() -> int:
    """FLOWOPS_CPU_REPLICAS as a number (1 when unset); ValueError when it is not a positive integer."""
    value = os.environ.get(CPU_REPLICAS_ENV, "1").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CPU_REPLICAS_ENV}={value!r}: must be a positive integer (the CPU's logical devices)")
    return int(value)


def _split_cpu(tf) -> None:
    """FLOWOPS_CPU_REPLICAS=N (a testing knob): the CPU as N logical devices, so a MirroredStrategy
    over several devices runs without GPUs. Only possible before TensorFlow starts its runtime."""
    n = cpu_replicas()
    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
