"""The metrics a template's trainer logs, as the engine needs to know them (entry point group
`flowops.metrics`): which way is better, the values they can take, which ones name a class, and
the order a report shows them in. The engine names no metric of its own; a policy declares any
other metric's direction under `metrics:`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

GROUP = "flowops.metrics"
Direction = Literal["max", "min"]  # max: higher is better


@dataclass(frozen=True)
class Vocabulary:
    directions: Mapping[str, Direction] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float, float | None]] = field(default_factory=dict)  # (low, high or None)
    primary: str = ""  # a policy's primary metric when it names none
    primary_examples: str = "validation examples"  # what the primary metric's evidence counts
    per_class: str = ""  # prefix of the per-class metrics (`<prefix><class>`): each in [0, 1], higher is better
    per_class_name: str = "per-class metric"  # what they are, in a report's words
    unguarded: tuple[str, ...] = ()  # classes the per-class guard leaves out, each with its reason
    unguarded_why: str = ""
    compared: tuple[str, ...] = ()  # the validation metrics a report compares first, in this order
    training: tuple[str, ...] = ()  # the last epoch's training metrics a report shows, never judges
    curves: tuple[str, ...] = ()  # learning-curve panels when the run logged any of them (`val_x` and `x`: panel x)

    def is_per_class(self, metric: str) -> bool:
        return bool(self.per_class) and metric.startswith(self.per_class)


@functools.cache
def vocabulary() -> Vocabulary:
    """The installed templates' metrics (one template: its own; several: merged, the first by name
    wins a name both define); an empty vocabulary when none is installed."""
    from flowops import plugins

    found: list[Vocabulary] = [e.load() for e in plugins.installed(GROUP)]
    if len(found) <= 1:
        return found[0] if found else Vocabulary()
    first = found[0]
    directions: dict[str, Direction] = {}
    bounds: dict[str, tuple[float, float | None]] = {}
    for v in reversed(found):
        directions.update(v.directions)
        bounds.update(v.bounds)
    return Vocabulary(
        directions,
        bounds,
        first.primary,
        first.primary_examples,
        first.per_class,
        first.per_class_name,
        first.unguarded,
        first.unguarded_why,
        tuple(dict.fromkeys(m for v in found for m in v.compared)),
        tuple(dict.fromkeys(m for v in found for m in v.training)),
        first.curves,
    )
