"""Mixed precision is the GPU default, and the switch that overrides it rejects typos."""

import pytest

from flowops.errors import FlowopsError
from flowops.segmentation.training.precision import precision_policy


@pytest.mark.parametrize(
    ("gpus", "setting", "policy"),
    [
        (1, None, "mixed_float16"),
        (0, None, "float32"),
        (2, "", "mixed_float16"),
        (1, "0", "float32"),
        (0, "1", "mixed_float16"),
    ],
)
def test_policy_follows_the_hardware_unless_told(gpus, setting, policy):
    assert precision_policy(gpus, setting) == policy


def test_unknown_setting_is_a_one_line_error():
    with pytest.raises(FlowopsError, match=r"FLOWOPS_MIXED_PRECISION: 'yes' is not allowed"):
        precision_policy(1, "yes")
