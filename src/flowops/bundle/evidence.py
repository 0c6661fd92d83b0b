"""The bundle's metrics against its own per-example evidence, before anything is imported.

A metric with evidence (`evaluation/per_example.npz`, a template's own files such as
segmentation's per-image `evaluation/confusion.npz`, and the same files for each holder the PR
scored) is a claim that the import checks: the number the run logged must be the number its
evidence makes (flowops.evaluation.agrees), or the interval computed later from that evidence
would be of another number than the one reviewers read and the policy judges.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from flowops.bundle.form import Bundle

MAX_UNPACKED = 2 << 30  # bytes an evidence file may unpack to (np.savez_compressed inflates)
HOLDER_FILE = re.compile(r"^artifacts/evaluation/holder\.([^/]+?)\.(per_example\.)?npz$")


def logged(bundle: Bundle) -> dict[str, float]:
    """Each metric's value as MLflow shows it: the latest by step, then time."""
    latest: dict[str, tuple[int, int, float]] = {}
    for m in bundle.metrics:
        if m.key not in latest or (m.step, m.timestamp) >= latest[m.key][:2]:
            latest[m.key] = (m.step, m.timestamp, m.value)
    return {k: v[2] for k, v in latest.items()}


def check_evidence(folder: Path, bundle: Bundle, spec: Any = None) -> str | None:
    """Why the bundle's metrics disagree with its evidence (one line), or None when they agree:
    each installed template's own evidence files first (segmentation: its per-image matrices,
    whose classes must be the experiment's from git, `spec`), then every `per_example.npz`."""
    from flowops import plugins
    from flowops.evaluation import agrees, evidence_in

    values = logged(bundle)
    for plug_in in plugins.installed(plugins.EVIDENCE):
        why = plug_in.load().check(folder, bundle.files, values, spec, _load)
        if why:
            return why
    for rel in sorted(bundle.files):
        holder = HOLDER_FILE.match(rel)
        if rel == "artifacts/evaluation/per_example.npz" or (holder and holder.group(2)):
            prefix = f"holder.{holder.group(1)}." if holder else ""
            arrays = _load(folder / rel)
            if isinstance(arrays, str):
                return arrays
            try:
                found = evidence_in(arrays, str(folder / rel))
            except ValueError as exc:
                return str(exc)
            for metric, evidence in found.items():
                name = prefix + metric
                made = evidence.value()
                if name not in values:
                    return f"{folder / rel}: {metric}: evidence of a metric the run did not log ({name})"
                if not agrees(values[name], made):
                    return (
                        f"{folder / rel}: {metric}: the evidence makes {made:.6g} ({evidence.aggregate} of "
                        f"{len(evidence.ids)} examples), the run logged {name} {values[name]:.6g}: the logged "
                        "number must be its evidence's (docs/comparison.md)"
                    )
    return None


def _load(path: Path) -> dict[str, Any] | str:
    """The file's arrays (no pickles), or why it cannot be read as evidence."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as packed:
            if sum(i.file_size for i in packed.infolist()) > MAX_UNPACKED:
                return f"{path}: unpacks to more than {MAX_UNPACKED} bytes"
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        return f"{path}: not a numpy .npz of plain arrays ({type(exc).__name__}: {first})"
