"""`registry_policy.yaml`: promotion rules as data (the file's model and its cross-field rules).

How a candidate is judged against these rules is `flowops.promotion.decide`, a pure function.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from flowops.spec.vocabulary import Direction, vocabulary
from flowops.suggest import did_you_mean

__all__ = ["Direction", "RegistryPolicy"]
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
# The metrics a template's trainer logs are its own (flowops.spec.vocabulary); a policy adds any
# other metric's direction under `metrics:`.


class _Strict(BaseModel):
    # allow_inf_nan=False: `.nan` or `.inf` as a threshold would make every comparison false.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


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
    confidence: float | None = Field(
        None,
        ge=0.5,
        le=0.999,
        description="Require the lower bound of this paired-bootstrap interval of the difference to clear the margin.",
    )


class Regression(_Strict):
    """A secondary metric may be worse than the holder's by at most `max_absolute`."""

    metric: str
    max_absolute: float = Field(ge=0)


class PerClass(_Strict):
    """No class's per-class metric (segmentation: IoU per category) may drop by more than `tolerance`."""

    tolerance: float = Field(0.0, ge=0, le=1)


class Target(_Strict):
    """The checks a candidate must pass to take one alias."""

    thresholds: list[Threshold] = Field(default_factory=list)
    improve: Improvement | None = None
    max_regression: list[Regression] = Field(default_factory=list)
    per_class: PerClass | None = None


class RegistryPolicy(_Strict):
    model_name: str = Field(min_length=1, max_length=200, description="Registered model that merges promote into.")
    primary_metric: str = Field(
        default_factory=lambda: vocabulary().primary,
        description="Ranks candidates and decides improvements (default: the installed template's own).",
    )
    metrics: dict[str, Direction] = Field(
        default_factory=dict, description="Directions of metrics beyond the template's own."
    )
    # Targets in order; by default staging takes anything above the floor, production needs an improvement.
    targets: dict[AliasName, Target] = Field(
        default_factory=lambda: {"staging": Target(), "production": Target(improve=Improvement())}, min_length=1
    )
    require_same_code: bool = Field(
        True, description="The run's code tree must equal the merged commit's (reviewed = shipped)."
    )
    ship_hand_logged_runs: bool | None = Field(
        None,
        description=(
            "May a run that the trusted import stage did not record (trained and logged by hand, or by any "
            "client holding the trainer's credential) ship? Its tags are then taken at their word. Default: "
            "only on the embedded store (a local SQLite file), where no PR pipeline exists."
        ),
    )
    legacy_stages: bool = Field(
        False, description="Also mirror aliases into the deprecated Staging/Production/Archived stages."
    )
    archive_previous: bool = Field(True, description="Mark a version archived when it loses its last alias.")
    mode: Literal["enabled", "dry_run", "disabled"] = Field(
        "enabled", description="dry_run: decide and report, move nothing."
    )
    share_holders_with_forks: bool = Field(
        False,
        description="Hand the alias holders' models to fork PRs' training jobs, so they score them on their data.",
    )
    max_training_batches: int | None = Field(
        None, ge=1, description="Cap on epochs x max_batches_per_epoch of every experiment."
    )

    def directions(self) -> dict[str, Direction]:
        return {**vocabulary().directions, **self.metrics}

    def direction(self, metric: str) -> Direction:
        return "max" if vocabulary().is_per_class(metric) else self.directions()[metric]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")  # MLflow reads these as a version, not an alias


def metric_bounds(metric: str) -> tuple[float, float | None] | None:
    """(low, high) a metric can take, None when no template says (a policy's own metric)."""
    known = vocabulary()
    return (0.0, 1.0) if known.is_per_class(metric) else known.bounds.get(metric)


def _out_of_bounds(metric: str, value: float | None) -> str | None:
    bounds = metric_bounds(metric)
    if value is None or bounds is None:
        return None
    low, high = bounds
    if value < low or (high is not None and value > high):
        allowed = f"within [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        return f"{metric} is always {allowed}; {value:g} can never be met"
    return None


def _bound_problems(policy: RegistryPolicy) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    for alias, target in policy.targets.items():
        for i, t in enumerate(target.thresholds):
            for side in ("min", "max"):
                problem = _out_of_bounds(t.metric, getattr(t, side))
                out += [(("targets", alias, "thresholds", i, side), problem)] if problem else []
        bounds = metric_bounds(policy.primary_metric)
        if target.improve and bounds and bounds[1] is not None and target.improve.absolute > bounds[1] - bounds[0]:
            out.append(
                (
                    ("targets", alias, "improve", "absolute"),
                    f"{policy.primary_metric} spans at most {bounds[1] - bounds[0]:g}: "
                    f"an improvement of {target.improve.absolute:g} can never be met",
                )
            )
    return out


def metric_locations(policy: RegistryPolicy) -> list[tuple[tuple, str]]:
    """(location in the file, metric name) of every metric the policy names."""
    named: list[tuple[tuple, str]] = [(("primary_metric",), policy.primary_metric)]
    for alias, target in policy.targets.items():
        named += [(("targets", alias, "thresholds", i, "metric"), t.metric) for i, t in enumerate(target.thresholds)]
        named += [
            (("targets", alias, "max_regression", i, "metric"), r.metric) for i, r in enumerate(target.max_regression)
        ]
    return named


def policy_problems(policy: RegistryPolicy) -> list[tuple[tuple, str]]:
    """Cross-field rules, each with the location of the offending value in the file."""
    known = policy.directions()
    named = metric_locations(policy)
    if not policy.primary_metric:
        return [(("primary_metric",), "required: no installed template names a default primary metric")]
    out = [
        (loc, f"unknown metric {name!r}{did_you_mean(name, known)}; declare its direction under metrics:")
        for loc, name in named
        if name not in known and not vocabulary().is_per_class(name)
    ]
    out += [
        (("targets", alias), f"{alias!r} is reserved by MLflow (it names a version, not an alias)")
        for alias in policy.targets
        if RESERVED_ALIAS.match(alias)
    ]
    return out + _bound_problems(policy)
