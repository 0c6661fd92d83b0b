"""Mixed precision: on by default with a GPU, set by FLOWOPS_MIXED_PRECISION=1 or 0."""

from __future__ import annotations

from flowops.training.environment import MIXED_PRECISION_ENV, check_precision_setting

__all__ = ["MIXED_PRECISION_ENV", "check_precision_setting", "precision_policy"]


def precision_policy(gpus: int, setting: str | None) -> str:
    """Keras dtype policy for training: mixed_float16 on a GPU unless FLOWOPS_MIXED_PRECISION=0.

    Tensor cores do float16 math several times faster than float32; on a CPU it is slower.
    """
    check_precision_setting(setting)
    wanted = gpus > 0 if setting in (None, "") else setting == "1"
    return "mixed_float16" if wanted else "float32"
