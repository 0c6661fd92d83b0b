"""PNG figures for runs and reports (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def palette(n_classes: int) -> np.ndarray:
    """Fixed colours per class index; background is black."""
    base = np.array(
        [
            [0, 0, 0],
            [230, 75, 60],
            [60, 110, 230],
            [70, 190, 90],
            [240, 200, 50],
            [170, 90, 200],
            [60, 200, 200],
            [240, 140, 40],
            [150, 150, 150],
        ],
        dtype=np.uint8,
    )
    reps = int(np.ceil(n_classes / len(base)))
    return np.tile(base, (reps, 1))[:n_classes]


DPI = 144


def learning_curves(
    histories: dict[str, dict[str, list[float]]],
    path: Path,
    metrics=("iou", "loss"),
    thresholds: dict[str, float] | None = None,
) -> Path:
    """One panel per metric; each history (label -> {metric: per-epoch values}) as training (dashed) and
    validation (solid) lines on the same axes, epochs as integers, a policy threshold as a red line."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
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


def _coloured(colours: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Class colours; IGNORE (255, COCO crowds) in grey."""
    table = np.full((256, 3), 160, dtype=colours.dtype)
    table[: len(colours)] = colours
    return table[mask]


def mask_grid(
    rows: list[list[np.ndarray]], titles: list[str], n_classes: int, class_names: list[str], path: Path
) -> Path:
    """A grid: one row per image, columns image | mask | mask ... (masks coloured by class)."""
    plt = _pyplot()
    colours = palette(n_classes)
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(2.6 * len(titles), 2.4 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            ax.imshow(panel if panel.ndim == 3 else _coloured(colours, panel))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i] / 255) for i in range(n_classes)]
    fig.legend(handles, class_names, loc="lower center", ncol=min(n_classes, 6), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def per_class_bars(series: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: per-class IoU of each model (label -> {class: IoU}) side by side."""
    plt = _pyplot()
    classes = sorted({c for values in series.values() for c in values})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(classes)), 3.2))
    for i, (label, values) in enumerate(series.items()):
        xs = np.arange(len(classes)) + i * width
        ax.bar(xs, [values.get(c, 0.0) for c in classes], width, label=label)
    ax.set_xticks(np.arange(len(classes)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels(classes, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("validation IoU")
    ax.set_xlabel("category")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
