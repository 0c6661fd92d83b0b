"""`decide(candidate, holders, policy)`: whether a candidate takes each alias, a pure function.

No I/O: the PR report previews a merge with it and `flowops promote` applies it, so what
reviewers read is what happens. Every check explains itself with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flowops.spec.policy import PER_CLASS_PREFIX, Direction, RegistryPolicy, Target


@dataclass(frozen=True)
class Candidate:
    """What decide() needs to know about a model: its metrics and where its code came from."""

    label: str  # "run abc123" or "v4"
    metrics: dict[str, float]
    code_tree: str | None = None
    merged_code_tree: str | None = None  # the merged commit's, for require_same_code


@dataclass(frozen=True)
class Holder:
    version: str
    metrics: dict[str, float]


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
        checks += _comparisons(target, m, holder, policy)
    return TargetDecision(alias, all(c.passed for c in checks), holder.version if holder else None, checks)


def _comparisons(target: Target, m: dict[str, float], holder: Holder, policy: RegistryPolicy) -> list[Check]:
    checks = []
    h = holder.metrics
    if target.improve:
        name = policy.primary_metric
        why = _unusable(name, m, "the run") or _unusable(name, h, f"v{holder.version}")
        if why:
            checks.append(Check("improvement", False, why))
        else:
            # Relative margins scale with |holder value|: a zero or negative baseline stays sound.
            need = max(target.improve.absolute, target.improve.relative * abs(h[name]))
            gain = better_by(m[name], h[name], policy.direction(name))
            ok = gain > 0 and gain >= need
            rule = "> 0" if need == 0 else f">= {_fmt(need)}"
            verdict = "better" if gain > 0 else "not better"
            checks.append(
                Check(
                    "improvement",
                    ok,
                    f"{name} {_fmt(m[name])} vs {_fmt(h[name])} (v{holder.version}): {verdict} by "
                    f"{_fmt(gain)}, needs {rule}",
                )
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
        dropped = []
        # Categories only: background IoU rewards predicting nothing, so it is not a guard.
        for name in sorted(k for k in h if k.startswith(PER_CLASS_PREFIX) and k != PER_CLASS_PREFIX + "background"):
            why = _unusable(name, m, "the run") or _unusable(name, h, f"v{holder.version}")
            if why:
                dropped.append(why)
            elif h[name] - m[name] > target.per_class.tolerance:
                dropped.append(f"{name} {_fmt(m[name])} < {_fmt(h[name])}")
        ok = not dropped
        detail = (
            "no category got worse"
            if ok
            else f"per-class IoU dropped by more than {_fmt(target.per_class.tolerance)}: " + ", ".join(dropped)
        )
        checks.append(Check("per-class IoU", ok, detail))
    return checks


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
