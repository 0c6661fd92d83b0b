"""Whether a user asked to see TensorFlow's and MLflow's own log lines (`flowops --verbose`)."""

from __future__ import annotations

import os

VERBOSE_ENV = "FLOWOPS_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")
