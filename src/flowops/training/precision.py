"""Mixed precision: on by default with a GPU, set by FLOWOPS_MIXED_PRECISION=1 or 0."""

from __future__ import annotations

from flowops.errors import FlowopsError

MIXED_PRECISION_ENV = "FLOWOPS_MIXED_PRECISION"


def check_precision_setting(setting: str | None) -> None:
    """FLOWOPS_MIXED_PRECISION is 1 (on), 0 (off) or unset/empty (on with a GPU): a one-line error otherwise."""
    if setting not in (None, "", "0", "1"):
        raise FlowopsError(
            f"environment {MIXED_PRECISION_ENV}: {setting!r} is not allowed: use 1 (on), 0 (off) or leave it "
            f"unset (on with a GPU)"
        )


def precision_policy(gpus: int, setting: str | None) -> str:
    """Keras dtype policy for training: mixed_float16 on a GPU unless FLOWOPS_MIXED_PRECISION=0.

    Tensor cores do float16 math several times faster than float32; on a CPU it is slower.
    """
    check_precision_setting(setting)
    wanted = gpus > 0 if setting in (None, "") else setting == "1"
    return "mixed_float16" if wanted else "float32"
