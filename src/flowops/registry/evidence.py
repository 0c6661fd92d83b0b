"""What decide() compares, read from runs: metrics, the evaluation set, paired bootstrap intervals.

Two models' numbers are compared only when both were evaluated on the same data (the
`flowops.eval_set` tag); the interval of their difference comes from the per-image confusion
matrices each run stores (`evaluation/confusion.npz`), resampled together (flowops.evaluation).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flowops.evaluation import Interval, paired_bootstrap
from flowops.registry.decide import Candidate, Holder

EVAL_SET_TAG = "flowops.eval_set"
CONFUSION = "evaluation/confusion.npz"
SEED = 0  # the interval is a function of the two runs: the same every time it is computed


def holder(label: str, run: Any) -> Holder:
    return Holder(label, dict(run.data.metrics), run.data.tags.get(EVAL_SET_TAG))


def candidate(label: str, run: Any, merged_tree: str | None) -> Candidate:
    tags = run.data.tags
    return Candidate(label, dict(run.data.metrics), tags.get("flowops.code_tree"), merged_tree, tags.get(EVAL_SET_TAG))


def confusion(client: Any, run: Any) -> tuple[Any, list[str]] | None:
    """(per-image matrices, image names) the run stored; None when it stored none (absent, not an error)."""
    import numpy as np

    listed = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    if CONFUSION not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run.info.run_id, CONFUSION, tmp)
        with np.load(Path(path)) as data:
            return data["confusion"], [str(n) for n in data["file_names"]]


def interval(client: Any, cand_run: Any, holder_run: Any, confidence: float) -> Interval | None:
    """The paired interval of val_miou(candidate) - val_miou(holder); None unless both stored the same images."""
    tags_c, tags_h = cand_run.data.tags, holder_run.data.tags
    if tags_c.get(EVAL_SET_TAG) is None or tags_c.get(EVAL_SET_TAG) != tags_h.get(EVAL_SET_TAG):
        return None
    mine, theirs = confusion(client, cand_run), confusion(client, holder_run)
    if mine is None or theirs is None or mine[1] != theirs[1] or mine[0].shape != theirs[0].shape:
        return None
    return paired_bootstrap(mine[0], theirs[0], confidence=confidence, seed=SEED)


def with_intervals(
    client: Any, cand: Candidate, cand_run: Any, holders: dict[str, tuple[Holder, Any] | None], confidence: float
) -> Candidate:
    """`cand` with the interval against each holder evaluated on the same data."""
    found = dict(cand.intervals)
    for entry in holders.values():
        if entry is None or entry[0].version in found:
            continue
        held, run = entry
        if run.info.run_id == cand_run.info.run_id:
            continue
        got = interval(client, cand_run, run, confidence)
        if got is not None:
            found[held.version] = got
    return Candidate(cand.label, cand.metrics, cand.code_tree, cand.merged_code_tree, cand.eval_set, found)


def confidence_of(policy: Any, alias: str | None = None) -> float:
    """The confidence the policy asks for (of `alias`, or the highest of any target); 0.95 to show one."""
    levels = [
        t.improve.confidence
        for a, t in policy.targets.items()
        if t.improve and t.improve.confidence and (alias is None or a == alias)
    ]
    return max(levels) if levels else 0.95
