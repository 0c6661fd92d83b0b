"""`registry_policy.yaml`: promotion rules as data, and `decide()`, a pure function of them.

`decide(candidate, holders, policy)` does no I/O: the PR report previews a merge with it
and `flowops promote` applies it, so what reviewers read is what happens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from flowops.suggest import did_you_mean

Direction = Literal["max", "min"]  # max: higher is better
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
PER_CLASS_PREFIX = "val_iou."  # per-class validation IoU, one metric per category

# Directions of the metrics flowops logs; a policy may add its own under `metrics:`.
BUILTIN_METRICS: dict[str, Direction] = {
    "val_iou": "max", "val_miou": "max", "val_f1": "max", "val_loss": "min",
    "iou": "max", "f1": "max", "loss": "min",
}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Threshold(_Strict):
    """An absolute bound on one metric of the candidate."""

    metric: str
    min: float | None = Field(None, description="The candidate's value must be at least this.")
    max: float | None = Field(None, description="The candidate's value must be at most this.")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError(f"threshold on {self.metric!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"contradictory threshold on {self.metric!r}: min {self.min} > max {self.max}")
        return self


class Improvement(_Strict):
    """The candidate must beat the alias's current holder on the primary metric by a margin."""

    absolute: float = Field(0.0, ge=0, description="At least this much better, in the metric's units.")
    relative: float = Field(0.0, ge=0, le=10, description="At least this fraction of |holder's value| better.")


class Regression(_Strict):
    """A secondary metric may be worse than the holder's by at most `max_absolute`."""

    metric: str
    max_absolute: float = Field(ge=0)


class PerClass(_Strict):
    """No category's validation IoU (background aside) may drop by more than `tolerance` against the holder."""

    tolerance: float = Field(0.0, ge=0, le=1)


class Target(_Strict):
    """The checks a candidate must pass to take one alias."""

    thresholds: list[Threshold] = Field(default_factory=list)
    improve: Improvement | None = None
    max_regression: list[Regression] = Field(default_factory=list)
    per_class: PerClass | None = None


class RegistryPolicy(_Strict):
    model_name: str = Field(min_length=1, max_length=200, description="Registered model that merges promote into.")
    primary_metric: str = Field("val_iou", description="Ranks candidates and decides improvements.")
    metrics: dict[str, Direction] = Field(default_factory=dict, description="Directions of metrics beyond flowops' own.")
    # Targets in order; by default staging takes anything above the floor, production needs an improvement.
    targets: dict[AliasName, Target] = Field(
        default_factory=lambda: {"staging": Target(), "production": Target(improve=Improvement())}, min_length=1
    )
    require_same_code: bool = Field(True, description="The run's code tree must equal the merged commit's (reviewed = shipped).")
    legacy_stages: bool = Field(False, description="Also mirror aliases into the deprecated Staging/Production/Archived stages.")
    archive_previous: bool = Field(True, description="Mark a version archived when it loses its last alias.")
    mode: Literal["enabled", "dry_run", "disabled"] = Field("enabled", description="dry_run: decide and report, move nothing.")
    max_training_batches: int | None = Field(None, ge=1, description="Cap on epochs x max_batches_per_epoch of every experiment.")

    def directions(self) -> dict[str, Direction]:
        return {**BUILTIN_METRICS, **self.metrics}

    def direction(self, metric: str) -> Direction:
        return "max" if metric.startswith(PER_CLASS_PREFIX) else self.directions()[metric]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


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


def policy_problems(policy: RegistryPolicy) -> list[tuple[tuple, str]]:
    """Cross-field rules, each with the location of the offending value in the file."""
    known = policy.directions()
    named: list[tuple[tuple, str]] = [(("primary_metric",), policy.primary_metric)]
    for alias, target in policy.targets.items():
        named += [(("targets", alias, "thresholds", i, "metric"), t.metric) for i, t in enumerate(target.thresholds)]
        named += [(("targets", alias, "max_regression", i, "metric"), r.metric) for i, r in enumerate(target.max_regression)]
    out = [(loc, f"unknown metric {name!r}{did_you_mean(name, known)}; declare its direction under metrics:")
           for loc, name in named if name not in known and not name.startswith(PER_CLASS_PREFIX)]  # fmt: skip
    if "latest" in policy.targets:
        out.append((("targets", "latest"), "'latest' is reserved by MLflow and cannot be an alias"))
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def better_by(value: float, reference: float, direction: Direction) -> float:
    """How much better `value` is than `reference` (negative: worse)."""
    return value - reference if direction == "max" else reference - value


def decide(candidate: Candidate, holders: dict[str, Holder | None], policy: RegistryPolicy) -> Decision:
    """Per target alias: promote or not, with every check explained. Pure, never raises on data."""
    return Decision(candidate.label, {alias: _decide_target(alias, target, candidate, holders.get(alias), policy)
                                      for alias, target in policy.targets.items()})  # fmt: skip


def _decide_target(alias: str, target: Target, cand: Candidate, holder: Holder | None, policy: RegistryPolicy) -> TargetDecision:
    checks: list[Check] = []
    m = cand.metrics
    if policy.require_same_code:
        if cand.code_tree and cand.code_tree == cand.merged_code_tree:
            checks.append(Check("same code", True, "trained on the merged code"))
        else:
            checks.append(Check("same code", False, f"trained on code tree {str(cand.code_tree)[:12]}, merged code is {str(cand.merged_code_tree)[:12]}: retrain on the merged code"))
    for t in target.thresholds:
        if t.metric not in m:
            checks.append(Check(f"{t.metric} threshold", False, f"{t.metric} is missing from the run"))
            continue
        ok = (t.min is None or m[t.metric] >= t.min) and (t.max is None or m[t.metric] <= t.max)
        bound = " and ".join(s for s in (t.min is not None and f">= {_fmt(t.min)}", t.max is not None and f"<= {_fmt(t.max)}") if s)
        checks.append(Check(f"{t.metric} threshold", ok, f"{t.metric} {_fmt(m[t.metric])} {'meets' if ok else 'fails'} {bound}"))
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
        if name not in m or name not in h:
            whose = "the run" if name not in m else f"v{holder.version}"
            checks.append(Check("improvement", False, f"{name} is missing from {whose}"))
        else:
            # Relative margins scale with |holder value|: a zero or negative baseline stays sound.
            need = max(target.improve.absolute, target.improve.relative * abs(h[name]))
            gain = better_by(m[name], h[name], policy.direction(name))
            ok = gain > 0 and gain >= need
            rule = "> 0" if need == 0 else f">= {_fmt(need)}"
            verdict = "better" if gain > 0 else "not better"
            checks.append(Check("improvement", ok, f"{name} {_fmt(m[name])} vs {_fmt(h[name])} (v{holder.version}): {verdict} by {_fmt(gain)}, needs {rule}"))
    for r in target.max_regression:
        if r.metric not in m or r.metric not in h:
            checks.append(Check(f"{r.metric} regression", False, f"{r.metric} is missing from {'the run' if r.metric not in m else 'v' + holder.version}"))
            continue
        worse = -better_by(m[r.metric], h[r.metric], policy.direction(r.metric))
        ok = worse <= r.max_absolute
        change = f"worse by {_fmt(worse)}" if worse > 0 else ("better by " + _fmt(-worse) if worse < 0 else "unchanged")
        checks.append(Check(f"{r.metric} regression", ok, f"{r.metric} {_fmt(m[r.metric])} vs {_fmt(h[r.metric])}: {change}, allowed worse by {_fmt(r.max_absolute)}"))
    if target.per_class:
        dropped = []
        # Categories only: background IoU rewards predicting nothing, so it is not a guard.
        for name in sorted(k for k in h if k.startswith(PER_CLASS_PREFIX) and k != PER_CLASS_PREFIX + "background"):
            if name not in m:
                dropped.append(f"{name} missing")
            elif h[name] - m[name] > target.per_class.tolerance:
                dropped.append(f"{name} {_fmt(m[name])} < {_fmt(h[name])}")
        ok = not dropped
        detail = "no category got worse" if ok else f"per-class IoU dropped by more than {_fmt(target.per_class.tolerance)}: " + ", ".join(dropped)
        checks.append(Check("per-class IoU", ok, detail))
    return checks


def rank(candidates: list[Candidate], policy: RegistryPolicy) -> list[Candidate]:
    """Best first by the primary metric (missing values last)."""
    name, sign = policy.primary_metric, 1 if policy.direction(policy.primary_metric) == "max" else -1
    return sorted(candidates, key=lambda c: (name not in c.metrics, -sign * c.metrics.get(name, 0.0)))
