"""`decide(candidate, holders, policy)`: whether a candidate takes each alias, a pure function.

No I/O: the PR report previews a merge with it and `flowops promote` applies it, so what
reviewers read is what happens. Every check explains itself with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flowops.evaluation import Interval
from flowops.spec.policy import Direction, RegistryPolicy, Target
from flowops.spec.vocabulary import vocabulary


@dataclass(frozen=True)
class Candidate:
    """What decide() needs to know about a model: its metrics and where its code came from."""

    label: str  # "run abc123" or "v4"
    metrics: dict[str, float]
    code_tree: str | None = None
    merged_code_tree: str | None = None  # the merged commit's, for require_same_code
    eval_set: str | None = None  # flowops.eval_set: numbers are compared only on the same evaluation data
    # (holder version, metric, confidence) -> the paired bootstrap interval of metric(self) - metric(holder)
    intervals: dict[tuple[str, str, float], Interval] = field(default_factory=dict)

    def interval(self, version: str, metric: str, confidence: float | None) -> Interval | None:
        """The interval against holder `version` of `metric` at `confidence` (None: any level, to show)."""
        if confidence is not None:
            return self.intervals.get((version, metric, confidence))
        return next((i for (v, m, _), i in sorted(self.intervals.items()) if v == version and m == metric), None)


@dataclass(frozen=True)
class Holder:
    version: str
    metrics: dict[str, float]
    eval_set: str | None = None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str  # one plain sentence with the numbers


@dataclass
class TargetDecision:
    alias: str
    promote: bool
    holder: str | None  # version holding the alias now
    checks: list[Check] = field(default_factory=list)

    def summary(self) -> str:
        failed = [c.detail for c in self.checks if not c.passed]
        if self.promote:
            return f"{self.alias}: promote (was {self.holder or 'unset'})"
        return f"{self.alias}: keep {self.holder or 'unset'}: " + "; ".join(failed)


@dataclass
class Decision:
    candidate: str
    targets: dict[str, TargetDecision]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _unusable(name: str, metrics: dict[str, float], whose: str) -> str | None:
    """Why `name` cannot be compared: missing, or not a finite number (NaN passes no comparison honestly)."""
    if name not in metrics:
        return f"{name} is missing from {whose}"
    if not math.isfinite(metrics[name]):
        return f"{name} is {metrics[name]} in {whose}: not a number that can be compared"
    return None


def better_by(value: float, reference: float, direction: Direction) -> float:
    """How much better `value` is than `reference` (negative: worse)."""
    return value - reference if direction == "max" else reference - value


def decide(candidate: Candidate, holders: dict[str, Holder | None], policy: RegistryPolicy) -> Decision:
    """Per target alias: promote or not, with every check explained. Pure, never raises on data."""
    return Decision(
        candidate.label,
        {
            alias: _decide_target(alias, target, candidate, holders.get(alias), policy)
            for alias, target in policy.targets.items()
        },
    )


def _decide_target(
    alias: str, target: Target, cand: Candidate, holder: Holder | None, policy: RegistryPolicy
) -> TargetDecision:
    checks: list[Check] = []
    m = cand.metrics
    if policy.require_same_code:
        if cand.code_tree and cand.code_tree == cand.merged_code_tree:
            checks.append(Check("same code", True, "trained on the merged code"))
        else:
            checks.append(
                Check(
                    "same code",
                    False,
                    f"trained on code tree {str(cand.code_tree)[:12]}, merged code is "
                    f"{str(cand.merged_code_tree)[:12]}: retrain on the merged code",
                )
            )
    for t in target.thresholds:
        why = _unusable(t.metric, m, "the run")
        if why:
            checks.append(Check(f"{t.metric} threshold", False, why))
            continue
        ok = (t.min is None or m[t.metric] >= t.min) and (t.max is None or m[t.metric] <= t.max)
        bound = " and ".join(
            s for s in (t.min is not None and f">= {_fmt(t.min)}", t.max is not None and f"<= {_fmt(t.max)}") if s
        )
        checks.append(
            Check(f"{t.metric} threshold", ok, f"{t.metric} {_fmt(m[t.metric])} {'meets' if ok else 'fails'} {bound}")
        )
    if holder is None:
        if target.improve or target.max_regression or target.per_class:
            checks.append(Check("comparison", True, f"no current {alias} model: nothing to compare against"))
    else:
        checks += _comparisons(target, cand, holder, policy)
    return TargetDecision(alias, all(c.passed for c in checks), holder.version if holder else None, checks)


def comparable(cand: Candidate, holder: Holder) -> str | None:
    """Why the two models' numbers cannot be compared (different or unknown evaluation data), or None."""
    if cand.eval_set is None:
        return (
            "not comparable: the run records no evaluation set (flowops.eval_set); its training code must set "
            "the tag (docs/own-project.md)"
        )
    if holder.eval_set is None:
        return (
            f"not comparable: v{holder.version} records no evaluation set (flowops.eval_set); score it on this "
            "run's data: flowops train --holders (segmentation, or a project's evaluate entry point)"
        )
    if cand.eval_set != holder.eval_set:
        return (
            f"not comparable: different evaluation data (eval set {cand.eval_set[:12]} vs "
            f"{holder.eval_set[:12]} of v{holder.version})"
        )
    return None


def _comparisons(target: Target, cand: Candidate, holder: Holder, policy: RegistryPolicy) -> list[Check]:
    checks = []
    m, h = cand.metrics, holder.metrics
    unlike = comparable(cand, holder)
    if unlike and (target.improve or target.max_regression or target.per_class):
        return [Check("same evaluation data", False, unlike)]  # different data say nothing about which is better
    if target.improve:
        name = policy.primary_metric
        why = _unusable(name, m, "the run") or _unusable(name, h, f"v{holder.version}")
        if why:
            checks.append(Check("improvement", False, why))
        else:
            level = target.improve.confidence
            checks.append(
                _improvement(target, name, m[name], h[name], holder, cand.interval(holder.version, name, level), policy)
            )
    for r in target.max_regression:
        why = _unusable(r.metric, m, "the run") or _unusable(r.metric, h, f"v{holder.version}")
        if why:
            checks.append(Check(f"{r.metric} regression", False, why))
            continue
        worse = -better_by(m[r.metric], h[r.metric], policy.direction(r.metric))
        ok = worse <= r.max_absolute
        change = f"worse by {_fmt(worse)}" if worse > 0 else ("better by " + _fmt(-worse) if worse < 0 else "unchanged")
        checks.append(
            Check(
                f"{r.metric} regression",
                ok,
                f"{r.metric} {_fmt(m[r.metric])} vs {_fmt(h[r.metric])}: {change}, allowed worse by "
                f"{_fmt(r.max_absolute)}",
            )
        )
    if target.per_class:
        checks.append(_per_class(target.per_class.tolerance, m, h, holder))
    return checks


def _improvement(
    target: Target, name: str, value: float, held: float, holder: Holder, interval: Interval | None, policy
) -> Check:
    assert target.improve is not None
    # Relative margins scale with |holder value|: a zero or negative baseline stays sound.
    need = max(target.improve.absolute, target.improve.relative * abs(held))
    gain = better_by(value, held, policy.direction(name))
    rule = "> 0" if need == 0 else f">= {_fmt(need)}"
    head = f"{name} {_fmt(value)} vs {_fmt(held)} (v{holder.version})"
    confidence = target.improve.confidence
    if confidence is None:
        ok = gain > 0 and gain >= need
        verdict = "better" if gain > 0 else "not better"
        shown = (
            f", {interval.confidence:.0%} interval [{_fmt(interval.low)}, {_fmt(interval.high)}]" if interval else ""
        )
        return Check("improvement", ok, f"{head}: {verdict} by {_fmt(gain)}{shown}, needs {rule}")
    if interval is not None and (interval.metric != name or abs(interval.confidence - confidence) > 1e-9):
        return Check(  # an interval of another metric or level says nothing about this rule
            "improvement",
            False,
            f"{head}: the interval at hand is of {interval.metric} at {interval.confidence:.0%}, the policy asks "
            f"for {name} at {confidence:.0%}",
        )
    if interval is None or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return Check(
            "improvement",
            False,
            f"{head}: no per-example evidence of {name} from both models on the same examples to give the "
            f"{confidence:.0%} interval the policy asks for (evaluation/per_example.npz, docs/comparison.md)",
        )
    low = interval.low if policy.direction(name) == "max" else -interval.high
    span = f"{confidence:.0%} interval of the difference [{_fmt(interval.low)}, {_fmt(interval.high)}]"
    if interval.contains_zero():
        return Check("improvement", False, f"{head}: not distinguishable from v{holder.version} ({span} contains 0)")
    ok = low > need
    verdict = "better" if gain > 0 else "not better"
    return Check("improvement", ok, f"{head}: {verdict} by {_fmt(gain)}, {span}; needs its lower bound > {_fmt(need)}")


def _per_class(tolerance: float, m: dict[str, float], h: dict[str, float], holder: Holder) -> Check:
    """Every class's per-class metric (the template's, flowops.spec.vocabulary) may drop by at most
    `tolerance`; each drop is named with its size.

    Both were evaluated on the same data (checked before). A class the candidate has no value for
    is absent from both the truth and its predictions; the holder's value of it is then 0 (it
    predicted the class somewhere): not measured on this data, for either side, never a drop.
    A holder value above 0 means the truth has the class, and then the candidate's is missing."""
    unusable, too_much, within, absent = [], [], [], []
    known = vocabulary()
    prefix, label = known.per_class, f"per-class {known.per_class_name}"
    unguarded = {prefix + c for c in known.unguarded}  # the template says why (segmentation: background)
    for name in sorted(k for k in h if known.is_per_class(k) and k not in unguarded):
        category = name.removeprefix(prefix)
        if name not in m and h[name] == 0:
            absent.append(category)
            continue
        why = _unusable(name, m, "the run") or _unusable(name, h, f"v{holder.version}")
        if why:
            unusable.append(why)
        elif h[name] - m[name] > tolerance:
            too_much.append(f"{category} dropped {_fmt(h[name] - m[name])}")
        elif h[name] > m[name]:
            within.append(f"{category} dropped {_fmt(h[name] - m[name])}")
    note = f" ({', '.join(absent)}: not in the validation truth, not measured)" if absent else ""
    if unusable or too_much:
        over = [f"over the {_fmt(tolerance)} tolerance: " + ", ".join(too_much)] if too_much else []
        return Check(label, False, "; ".join(unusable + over) + note)
    if within:
        return Check(label, True, ", ".join(within) + f": within the {_fmt(tolerance)} tolerance" + note)
    return Check(label, True, "no category dropped" + note)


def rank(candidates: list[Candidate], policy: RegistryPolicy) -> list[Candidate]:
    """Best first by the primary metric (missing values last)."""
    name, sign = policy.primary_metric, 1 if policy.direction(policy.primary_metric) == "max" else -1

    def key(c: Candidate) -> tuple[bool, float]:
        value = c.metrics.get(name, math.nan)
        return (not math.isfinite(value), -sign * value if math.isfinite(value) else 0.0)

    return sorted(candidates, key=key)


def explain(decision: Decision) -> list[str]:
    """Human lines for a Decision (used by promote output and the PR report)."""
    lines = []
    for alias, td in decision.targets.items():
        lines.append(f"{alias}: {'promote' if td.promote else 'keep ' + (('v' + td.holder) if td.holder else 'unset')}")
        lines += [f"  {'✓' if c.passed else '✗'} {c.detail}" for c in td.checks]
    return lines
