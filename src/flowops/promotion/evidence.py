"""What decide() compares, read from runs: metrics, the evaluation set, paired bootstrap intervals.

Two models' numbers are compared only when both were evaluated on the same data. The best
evidence is the candidate run's own scoring of the holder on its validation images
(`holder.<alias>.*`, logged by a template's trainer or an `evaluate:` entry point); otherwise the
holder's own run, when its `flowops.eval_set` tag equals the candidate's. An interval is of one
metric at one confidence: the policy's primary metric at the level the alias's target asks for.
It comes from both models' per-example evidence of that metric (flowops.evaluation.Evidence):
what an installed template's evidence plug-in reads from the run's own artifacts
(`flowops.plugins.EVIDENCE`: the segmentation template's per-image confusion matrices), else
`evaluation/per_example.npz`, whose arrays say how the metric aggregates (mean, rmse, ratio,
confusion); examples are resampled in pairs and each resample recomputes that aggregate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flowops import plugins
from flowops.evaluation import Evidence, Interval, evidence_in, paired_bootstrap_of
from flowops.promotion.decide import Candidate, Holder

EVAL_SET_TAG = "flowops.eval_set"
PER_EXAMPLE = "evaluation/per_example.npz"
SHOWN = 0.95  # the level of an interval shown where the policy asks for none
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


def evidence_of(client: Any, run: Any, metric: str, scored: str | None = None) -> Evidence | None:
    """The run's per-example evidence of `metric` (of the holder it scored as alias `scored`):
    what an installed template's evidence plug-in finds in the run's artifacts (segmentation: its
    primary metric from per-image confusion matrices), else `evaluation/per_example.npz`. None
    when there is none or it is malformed (then no interval: fail closed); a failed read raises."""
    for plug_in in plugins.installed(plugins.EVIDENCE):
        found = plug_in.load().read(metric, scored, lambda name: _arrays(client, run, name))
        if found is not None:
            return found
    prefix = "evaluation/" if scored is None else f"evaluation/holder.{scored}."
    arrays = _arrays(client, run, prefix + "per_example.npz")
    if arrays is None:
        return None
    try:
        return evidence_in(arrays, prefix + "per_example.npz").get(metric)
    except ValueError:
        return None


def interval(client: Any, cand_run: Any, holder_run: Any, confidence: float, metric: str) -> Interval | None:
    """The paired interval of metric(candidate) - metric(holder) at `confidence`, from both models'
    per-example evidence of that metric on the same examples: the candidate's scoring of the holder
    first, else the holder's own run when it was evaluated on the same data; None unless both have it."""
    mine = evidence_of(client, cand_run, metric)
    if mine is None:
        return None
    alias = scored_alias(cand_run, holder_run)
    theirs = evidence_of(client, cand_run, metric, alias) if alias is not None else None
    same_data = cand_run.data.tags.get(EVAL_SET_TAG) is not None and cand_run.data.tags.get(
        EVAL_SET_TAG
    ) == holder_run.data.tags.get(EVAL_SET_TAG)
    if theirs is None and same_data:  # (a holder scored for its masks has no per-image loss, say)
        theirs = evidence_of(client, holder_run, metric)
    if theirs is None or mine.ids != theirs.ids or mine.aggregate != theirs.aggregate:
        return None
    if mine.values.shape != theirs.values.shape:
        return None
    return paired_bootstrap_of(mine, theirs, confidence=confidence, seed=SEED)


def with_intervals(
    client: Any,
    cand: Candidate,
    cand_run: Any,
    holders: dict[str, tuple[Holder, Any] | None],
    policy: Any,
) -> Candidate:
    """`cand` with, for each alias's holder evaluated on the same data, the interval of the policy's
    primary metric at exactly the confidence that alias's target asks for (0.95 to show one)."""
    found = dict(cand.intervals)
    metric = policy.primary_metric
    for alias, entry in holders.items():
        if entry is None:
            continue
        held, run = entry
        key = (held.version, metric, confidence_of(policy, alias))
        if key in found or run.info.run_id == cand_run.info.run_id:
            continue
        got = interval(client, cand_run, run, key[2], metric)
        if got is not None:
            found[key] = got
    return Candidate(cand.label, cand.metrics, cand.code_tree, cand.merged_code_tree, cand.eval_set, found)


def confidence_of(policy: Any, alias: str) -> float:
    """The confidence `alias`'s target asks for; 0.95 (to show one) when it asks for none."""
    target = policy.targets.get(alias)
    level = target.improve.confidence if target is not None and target.improve is not None else None
    return level if level else SHOWN


def current_holders(registry: Any, aliases: Any) -> dict[str, Holder | None]:
    """Each alias's holder in `registry` (flowops.registry.store.Registry), with the metrics of the
    run that produced it; a failed read raises."""
    out = {}
    for alias in aliases:
        mv = registry.holder(alias)
        out[alias] = None if mv is None else holder(str(mv.version), registry.client.get_run(mv.run_id))
    return out
