"""What decide() compares, read from runs: metrics, the evaluation set, paired bootstrap intervals.

Two models' numbers are compared only when both were evaluated on the same data. The best
evidence is the candidate run's own scoring of the holder on its validation images
(`holder.<alias>.*`, flowops.training.holders); otherwise the holder's own run, when its
`flowops.eval_set` tag equals the candidate's. The interval of the difference comes from the
per-image confusion matrices (`evaluation/*.npz`), resampled together (flowops.evaluation); for
any other project, from per-example values of the primary metric (`evaluation/per_example.npz`:
`ids` and one array per metric whose mean the metric is), resampled in pairs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flowops.evaluation import Interval, paired_bootstrap, paired_bootstrap_mean
from flowops.registry.decide import Candidate, Holder

EVAL_SET_TAG = "flowops.eval_set"
CONFUSION = "evaluation/confusion.npz"
PER_EXAMPLE = "evaluation/per_example.npz"
SEED = 0  # the interval is a function of the two runs: the same every time it is computed


def holder(label: str, run: Any, cand_run: Any = None) -> Holder:
    """The holder as comparable with `cand_run`: the candidate's scoring of it when there is one."""
    alias = scored_alias(cand_run, run) if cand_run is not None else None
    if alias is not None:
        prefix = f"holder.{alias}."
        metrics = {k[len(prefix) :]: v for k, v in cand_run.data.metrics.items() if k.startswith(prefix)}
        return Holder(label, metrics, cand_run.data.tags.get(EVAL_SET_TAG))
    return Holder(label, dict(run.data.metrics), run.data.tags.get(EVAL_SET_TAG))


def scored_alias(cand_run: Any, holder_run: Any) -> str | None:
    """The alias under which the candidate's training scored `holder_run`'s model, if it did."""
    tags = cand_run.data.tags
    for key, value in tags.items():
        if key.startswith("flowops.holder.") and key.endswith(".run_id") and value == holder_run.info.run_id:
            alias = key[len("flowops.holder.") : -len(".run_id")]
            if tags.get(f"flowops.holder.{alias}") == "scored":
                return alias
    return None


def candidate(label: str, run: Any, merged_tree: str | None) -> Candidate:
    tags = run.data.tags
    return Candidate(label, dict(run.data.metrics), tags.get("flowops.code_tree"), merged_tree, tags.get(EVAL_SET_TAG))


def _arrays(client: Any, run: Any, name: str) -> dict[str, Any] | None:
    """The arrays of the run's `evaluation/*.npz` artifact `name`; None when it stored none (absent, not an error)."""
    import numpy as np

    listed = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    if name not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run.info.run_id, name, tmp)
        with np.load(Path(path), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def confusion(client: Any, run: Any, name: str = CONFUSION) -> tuple[Any, list[str]] | None:
    """(per-image matrices, image names) the run stored; None when it stored none."""
    data = _arrays(client, run, name)
    return None if data is None else (data["confusion"], [str(n) for n in data["file_names"]])


def per_example(client: Any, run: Any, metric: str) -> tuple[Any, list[str]] | None:
    """(per-example values of `metric`, example ids) the run stored; None when it stored none."""
    import numpy as np

    data = _arrays(client, run, PER_EXAMPLE)
    if data is None or metric not in data or "ids" not in data:
        return None
    return np.asarray(data[metric], dtype=np.float64), [str(i) for i in data["ids"]]


def interval(
    client: Any, cand_run: Any, holder_run: Any, confidence: float, metric: str = "val_miou"
) -> Interval | None:
    """The paired interval of metric(candidate) - metric(holder): val_miou from per-image confusion
    matrices, any other project's `metric` from per-example values; None unless both stored the same examples."""
    tags_c, tags_h = cand_run.data.tags, holder_run.data.tags
    alias = scored_alias(cand_run, holder_run)
    if alias is not None:  # the holder's model scored on the candidate's own images
        mine, theirs = confusion(client, cand_run), confusion(client, cand_run, f"evaluation/holder.{alias}.npz")
    elif tags_c.get(EVAL_SET_TAG) is None or tags_c.get(EVAL_SET_TAG) != tags_h.get(EVAL_SET_TAG):
        return None
    else:
        mine, theirs = confusion(client, cand_run), confusion(client, holder_run)
    if mine is None and theirs is None and alias is None:  # not a segmentation run: per-example values
        mine, theirs = per_example(client, cand_run, metric), per_example(client, holder_run, metric)
        if mine is None or theirs is None or mine[1] != theirs[1] or mine[0].shape != theirs[0].shape:
            return None
        return paired_bootstrap_mean(mine[0], theirs[0], metric, confidence=confidence, seed=SEED)
    if mine is None or theirs is None or mine[1] != theirs[1] or mine[0].shape != theirs[0].shape:
        return None
    return paired_bootstrap(mine[0], theirs[0], confidence=confidence, seed=SEED)


def with_intervals(
    client: Any,
    cand: Candidate,
    cand_run: Any,
    holders: dict[str, tuple[Holder, Any] | None],
    confidence: float,
    metric: str = "val_miou",
) -> Candidate:
    """`cand` with the interval against each holder evaluated on the same data."""
    found = dict(cand.intervals)
    for entry in holders.values():
        if entry is None or entry[0].version in found:
            continue
        held, run = entry
        if run.info.run_id == cand_run.info.run_id:
            continue
        got = interval(client, cand_run, run, confidence, metric)
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
