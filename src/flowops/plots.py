"""PNG figures for runs and reports (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


DPI = 144


def learning_curves(
    histories: dict[str, dict[str, list[float]]],
    path: Path,
    metrics: tuple[str, ...],
    thresholds: dict[str, float] | None = None,
) -> Path:
    """One panel per metric; each history (label -> {metric: per-epoch values}) as training (dashed) and
    validation (solid) lines on the same axes, epochs as integers, a policy threshold as a red line."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=False):
        for label, history in histories.items():
            for key, style in ((metric, "--"), (f"val_{metric}", "-")):
                values = history.get(key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3, label=f"{label} {key}")
        limit = (thresholds or {}).get(f"val_{metric}")
        if limit is not None:
            ax.axhline(limit, color="tab:red", lw=1, ls=":", label=f"policy threshold val_{metric} {limit:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def per_class_bars(series: dict[str, dict[str, float]], path: Path, ylabel: str) -> Path:
    """Grouped bars: a per-class metric of each model (label -> {class: value}) side by side."""
    plt = pyplot()
    classes = sorted({c for values in series.values() for c in values})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(classes)), 3.2))
    for i, (label, values) in enumerate(series.items()):
        xs = np.arange(len(classes)) + i * width
        ax.bar(xs, [values.get(c, 0.0) for c in classes], width, label=label)
    ax.set_xticks(np.arange(len(classes)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels(classes, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("category")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
