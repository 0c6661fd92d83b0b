"""What installed templates add to the engine, found through entry points (never imported by name).

Groups: `flowops.commands` (a list of click commands `flowops` adds), `flowops.schema` (a
template's experiment files: flowops.spec.template), `flowops.metrics` (its metrics:
flowops.spec.vocabulary), `flowops.report` (a figure for the PR report: `(client, candidate,
production, out) -> markdown`), `flowops.evidence` (an `EvidencePlugin`: per-example evidence in
files of a template's own format, read for the comparison and checked at import) and
`flowops.serving` (an `ImageAdapter`: how `flowops serve` decodes an upload for an image model).
The segmentation template registers one of each (pyproject.toml); a third-party template
registers its own the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

COMMANDS = "flowops.commands"
SERVING = "flowops.serving"
REPORT = "flowops.report"
EVIDENCE = "flowops.evidence"


@functools.cache
def installed(group: str) -> tuple[EntryPoint, ...]:
    """The group's entry points, each once, by name: a checkout installed under the old distribution
    name (flowops) and the new one (flowops-gitops) lists the same entry point twice. Read once per
    process (a scan of every installed distribution: ~3 ms, and a promote asks per run it binds)."""
    unique = {(e.name, e.value): e for e in entry_points(group=group)}
    return tuple(sorted(unique.values(), key=lambda e: e.name))


@dataclass(frozen=True)
class EvidencePlugin:
    """A template's per-example evidence in files of its own format (beside the engine's
    `evaluation/per_example.npz`, which needs no plug-in)."""

    # (metric, scored alias or None, read(artifact path) -> arrays | None) -> Evidence | None
    read: Callable[[str, str | None, Callable[[str], Any]], Any]
    # (bundle folder, its files, its logged metrics, the experiment from git, load(path) -> arrays |
    # why not) -> why its own evidence files disagree with the metrics (one line), or None
    check: Callable[[Path, Collection[str], dict[str, float], Any, Callable[[Path], Any]], str | None]


@dataclass(frozen=True)
class ImageAdapter:
    """How `flowops serve` answers `/predict` for a template's image model (one whose pyfunc has
    `meta` with `class_names`): the upload decoded as the training data were, the mask back at its size."""

    decode: Callable[[bytes, int, str], tuple[tuple[int, int], Any]]  # (body, size, method) -> (full, rgb)
    resize_mask: Callable[[Any, int, int], Any]  # (mask, width, height) -> mask
    encode_mask: Callable[[Any], dict]  # one class's boolean mask, as /predict's JSON answer holds it
    default_method: str  # a model logged before its method was recorded


def image_adapter() -> ImageAdapter | None:
    """The installed templates' image adapter (the first by name), or None: no image model is served."""
    for plug_in in installed(SERVING):
        return plug_in.load()
    return None
