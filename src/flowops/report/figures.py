"""The report's figures: learning curves against the holder, per-class bars, the images any run
logs under `report/`, and what report plug-ins draw (the segmentation template's prediction grid).

Drawn from what runs logged (metric histories, `samples/samples.npz`): no TensorFlow. Each part
appears only where the runs logged what it needs, so a project that is not the segmentation
template gets its curves (metrics logged per step) and its own figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowops import plots, plugins
from flowops.spec.policy import RegistryPolicy
from flowops.spec.vocabulary import vocabulary

FIGURES = "report"  # a run's own figures (PNG, JPEG, SVG) for the PR comment
PLUG_INS = plugins.REPORT  # entry point group of report plug-ins
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")


def per_class(run) -> dict[str, float]:
    """class -> the template's per-class metric of a run (segmentation: each category's IoU)."""
    known = vocabulary()
    return {k[len(known.per_class) :]: v for k, v in run.data.metrics.items() if known.is_per_class(k)}


def section(client: Any, candidate: Any, production: Any, out: Path, policy: RegistryPolicy) -> str:
    """The `### Plots` section; `candidate` and `production` have `.label` and `.run`."""
    models = [candidate] + ([production] if production else [])
    panels = _curve_panels(client, candidate.run)
    keys = sorted({k for p in panels for k in (p, f"val_{p}")})
    histories = {
        m.label: {k: [p.value for p in client.get_metric_history(m.run.info.run_id, k)] for k in keys} for m in models
    }
    target = policy.targets.get("production") or next(iter(policy.targets.values()))
    limits = {t.metric: float(t.min if t.min is not None else t.max or 0.0) for t in target.thresholds}
    parts = ["### Plots"]
    if panels:
        plots.learning_curves(histories, out / "learning_curves.png", metrics=tuple(panels), thresholds=limits)
        parts += ["", "![learning curves](learning_curves.png)"]
    classes = {m.label: per_class(m.run) for m in models}
    if any(classes.values()):
        name = vocabulary().per_class_name
        file = "per_class_" + "".join(c if c.isalnum() else "_" for c in name.lower()) + ".png"
        plots.per_class_bars(classes, out / file, f"validation {name}")
        parts += ["", f"![per-class {name}]({file})"]
    parts += _own_figures(client, candidate.run, out)
    parts += _plug_ins(client, candidate, production, out)
    return "\n".join(parts) if len(parts) > 1 else ""


def _plug_ins(client: Any, candidate: Any, production: Any, out: Path) -> list[str]:
    """What each installed report plug-in (entry point group `flowops.report`) adds: a function
    `(client, candidate, production, out) -> markdown` that draws from what the runs logged, or
    returns "" when they logged nothing it knows. The segmentation template's prediction grid is one."""
    lines = []
    for plug_in in plugins.installed(PLUG_INS):
        try:
            markdown = plug_in.load()(client, candidate, production, out)
        except Exception as exc:  # a figure only illustrates: say which plug-in failed, keep the report
            markdown = f"_The report plug-in {plug_in.name!r} failed: {type(exc).__name__}: {str(exc)[:200]}_"
        if markdown:
            lines += ["", markdown]
    return lines


def _curve_panels(client: Any, run: Any) -> list[str]:
    """The learning-curve panels: the template's own when the run logged any of them, else every
    metric the run logged at more than one step (`val_x` and `x` share a panel, named `x`), at most four."""
    metrics, known = run.data.metrics, vocabulary()
    if any(k in metrics or f"val_{k}" in metrics for k in known.curves):
        return list(known.curves)
    panels = []
    for key in sorted(k for k in metrics if not known.is_per_class(k) and not k.startswith("holder.")):
        name = key[len("val_") :] if key.startswith("val_") else key
        if name not in panels and len(client.get_metric_history(run.info.run_id, key)) > 1:
            panels.append(name)
    return panels[:4]


def _own_figures(client: Any, run: Any, out: Path) -> list[str]:
    """The images the run logged under `report/`, copied next to the report (markdown lines)."""
    import mlflow

    try:
        listed = [a for a in client.list_artifacts(run.info.run_id, FIGURES) if not a.is_dir]
    except Exception as exc:  # the figures only illustrate: say they are missing, and why
        return ["", f"_The run's {FIGURES}/ figures could not be listed: {type(exc).__name__}._"]
    lines = []
    for artifact in sorted(listed, key=lambda a: a.path)[:12]:
        name = Path(artifact.path).name
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        (out / FIGURES).mkdir(exist_ok=True)
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=artifact.path, dst_path=str(out / FIGURES)
        )
        lines += ["", f"![{Path(name).stem}]({FIGURES}/{name})"]
    return lines
