"""What installed templates add to the engine, found through entry points (never imported by name).

Groups: `flowops.report` (a figure for the PR report: `(client, candidate, production, out) ->
markdown`) and `flowops.evidence` (a metric's per-example evidence from a run's own artifacts:
`(metric, scored, read) -> Evidence | None`, `read(artifact) -> arrays | None`). The segmentation
template registers one of each (pyproject.toml); a third-party template registers its own the same way.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

REPORT = "flowops.report"
EVIDENCE = "flowops.evidence"


def installed(group: str) -> list[EntryPoint]:
    """The group's entry points, each once, by name: a checkout installed under the old distribution
    name (flowops) and the new one (flowops-gitops) lists the same entry point twice."""
    unique = {(e.name, e.value): e for e in entry_points(group=group)}
    return sorted(unique.values(), key=lambda e: e.name)
