"""The comparison a report shows, as data: `report.json` (schema: docs/report.schema.json).

For each alias: its holder, whether both models were evaluated on the same data, each
validation metric with the difference and (for the primary metric) the paired bootstrap
interval, and the decision with its checks, the same `decide()` that `flowops promote` applies.
The markdown report is rendered from this.
"""

from __future__ import annotations

import math
from typing import Any

from flowops.promotion import evidence
from flowops.promotion.decide import decide
from flowops.spec.policy import RegistryPolicy
from flowops.spec.vocabulary import vocabulary

FORMAT = 1


def compared(metrics: dict[str, float], policy: RegistryPolicy) -> list[str]:
    """The metrics a report compares, in order: the template's validation metrics, then every other metric
    the policy knows or the run logged as `val_*` (any project's), then the template's per-class metrics.
    (A template's training metrics are shown, not compared.)"""
    known = vocabulary()
    named = [policy.primary_metric, *policy.directions()]
    first = [n for n in known.compared if n in metrics]
    rest = sorted(
        {n for n in metrics if (n in named or n.startswith("val_")) and not known.is_per_class(n)} - set(first)
    )
    return first + rest + sorted(k for k in metrics if known.is_per_class(k))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def build(
    client: Any, run: Any, holders: dict[str, Any], policy: RegistryPolicy, merged_tree: str | None
) -> dict[str, Any]:
    """The report's data. `holders`: alias -> (version, run) or None."""
    tags = run.data.tags
    cand = evidence.candidate("this run", run, merged_tree)
    held = {a: None if h is None else (evidence.holder(str(h[0]), h[1], run), h[1]) for a, h in holders.items()}
    cand = evidence.with_intervals(client, cand, run, held, policy)  # each alias at its own level, as promote
    decision = decide(cand, {a: (h[0] if h else None) for a, h in held.items()}, policy)
    m = run.data.metrics
    names = compared(m, policy)
    aliases: dict[str, Any] = {}
    for alias, entry in held.items():
        td = decision.targets[alias]
        row: dict[str, Any] = {
            "holder": None,
            "same_eval_set": None,
            "metrics": {},
            "decision": {
                "promote": td.promote,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in td.checks],
            },
        }
        if entry is not None:
            holder, holder_run = entry
            same = cand.eval_set is not None and cand.eval_set == holder.eval_set
            row["holder"] = {
                "version": holder.version,
                "run_id": holder_run.info.run_id,
                "eval_set": holder.eval_set,
                "scored_by_candidate": evidence.scored_alias(run, holder_run) is not None,
            }
            row["same_eval_set"] = same
            interval = cand.interval(holder.version, policy.primary_metric, evidence.confidence_of(policy, alias))
            for name in names:
                value, ref = _num(m.get(name)), _num(holder.metrics.get(name))
                cell: dict[str, Any] = {
                    "candidate": value,
                    "holder": ref,
                    "delta": None if value is None or ref is None else value - ref,
                    "ci_low": None,
                    "ci_high": None,
                    "same_eval_set": same,
                }
                if interval is not None and name == interval.metric and same:
                    cell.update(
                        ci_low=interval.low,
                        ci_high=interval.high,
                        confidence=interval.confidence,
                        examples=interval.images,
                    )
                row["metrics"][name] = cell
        aliases[alias] = row
    return {
        "format": FORMAT,
        "candidate": {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "experiment_file": tags.get("flowops.experiment_file"),
            "eval_set": tags.get(evidence.EVAL_SET_TAG),
            "eval_images": int(tags["flowops.eval_images"]) if tags.get("flowops.eval_images", "").isdigit() else None,
            "metrics": {k: _num(v) for k, v in sorted(m.items())},
        },
        "policy": {"model_name": policy.model_name, "primary_metric": policy.primary_metric, "sha256": policy.sha256()},
        "aliases": aliases,
    }
