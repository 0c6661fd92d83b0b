"""The segmentation template's figures: masks coloured by class (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowops.plots import DPI, pyplot


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


def _coloured(colours: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Class colours; IGNORE (255, COCO crowds) in grey."""
    table = np.full((256, 3), 160, dtype=colours.dtype)
    table[: len(colours)] = colours
    return table[mask]


def mask_grid(
    rows: list[list[np.ndarray]], titles: list[str], n_classes: int, class_names: list[str], path: Path
) -> Path:
    """A grid: one row per image, columns image | mask | mask ... (masks coloured by class)."""
    plt = pyplot()
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
