"""The first epoch's order over rows that arrive while the cache is built (flowops.segmentation.data.stream)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.segmentation.data.stream import window_shuffled


def arriving(total: int, steps: list[int]):
    """A wait_rows whose rows arrive in the given steps (then all of them), as a build writes them."""
    counts = iter([*np.minimum(np.cumsum([max(1, s) for s in steps]), total).tolist(), total])
    state = {"rows": 0}

    def wait_rows(have: int) -> int:
        assert have == state["rows"], "asked again before taking what it had"
        state["rows"] = next((c for c in counts if c > have), total)
        return state["rows"]

    return wait_rows


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(0, 300),
    steps=st.lists(st.integers(1, 80), max_size=12),
    batch=st.integers(1, 9),
    window=st.integers(1, 64),
    seed=st.integers(0, 3),
    drop=st.booleans(),
)
def test_the_order_covers_every_row_once_and_never_depends_on_when_rows_arrived(
    total, steps, batch, window, seed, drop
):
    at_once = list(window_shuffled(lambda have: total, batch, seed, window=window, drop_remainder=drop))
    streamed = list(window_shuffled(arriving(total, steps), batch, seed, window=window, drop_remainder=drop))
    assert [b.tolist() for b in streamed] == [b.tolist() for b in at_once]
    assert all(len(b) == batch for b in streamed[:-1]) and all(b.dtype == np.int64 for b in streamed)
    flat = [i for b in streamed for i in b.tolist()]
    if drop:
        assert len(flat) == total - total % batch and len(set(flat)) == len(flat)
    else:
        assert sorted(flat) == list(range(total))


def test_the_order_is_shuffled_by_the_seed_and_in_order_without_shuffle():
    def flat(**kw):
        return [i for b in window_shuffled(lambda have: 200, 8, **kw) for i in b.tolist()]

    assert flat(seed=0, window=64) == flat(seed=0, window=64)
    assert flat(seed=0, window=64) != flat(seed=1, window=64)
    assert flat(seed=0, window=64) != list(range(200))
    assert flat(seed=0, shuffle=False) == list(range(200))
    # A window draws only from the next rows: nothing comes out before its window has been read.
    order = flat(seed=0, window=16)
    assert all(row < position + 16 for position, row in enumerate(order))
