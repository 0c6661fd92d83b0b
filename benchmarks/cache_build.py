"""Cache build: threads against processes, and the DCT-domain shrink against a full decode.

    .venv/bin/python benchmarks/cache_build.py [--images 2000] [--data DIR]

One generated COCO-format dataset of 640x480 JPEGs. The training split is decoded into a cache
entry (flowops.segmentation.data.entry.build) at 256 px, where the JPEG draft cannot apply (480 < 2 x 256),
and at 128 px, where libjpeg decodes at half size; each with threads and with worker processes,
and with the draft method against the plain one. Rows are identical between threads and
processes (tests/unit/test_data.py); only time differs.

The last line is `processes_over_threads=X draft_over_plain_128=Y` (images/s ratios at 128 px).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def build_rate(split, size: int, processes: bool, method: str) -> float:
    from flowops.segmentation.data import cache, entry

    folder = Path(tempfile.mkdtemp()) / "entry"
    start = time.perf_counter()
    entry.build(
        folder,
        split.images,
        size,
        lambda im: {**cache._job(split, im, size), "method": method},
        cache._decode,
        processes=processes,
    )
    rate = len(split.images) / (time.perf_counter() - start)
    shutil.rmtree(folder.parent)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", type=Path, help="reuse a generated dataset here")
    args = parser.parse_args()
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.data.synth import generate
    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.segmentation.preprocess import DRAFT, PLAIN

    root = args.data or Path(tempfile.mkdtemp()) / "coco640"
    if not (root / "annotations" / "instances_train.json").exists():
        print(f"generating {args.images} 640x480 images in {root} ...", flush=True)
        generate(root, images=args.images, width=640, height=480, seed=1)
    spec = ExperimentSpec.model_validate(
        {"name": "bench", "categories": ["person", "car", "dog"], "dataset": {"root": str(root)}}
    )
    split = open_split(spec, "train")
    rows, rates = [], {}
    for size in (256, 128):
        for method in (PLAIN, DRAFT):
            for processes in (False, True):
                rates[size, method, processes] = rate = build_rate(split, size, processes, method)
                how = "processes" if processes else "threads"
                print(f"{size} px, {method}, {how}: {rate:.0f} images/s", flush=True)
                rows.append(f"| {size} | {method} | {how} | {rate:.0f} images/s |")
    over_threads = rates[128, DRAFT, True] / rates[128, DRAFT, False]
    draft_gain = rates[128, DRAFT, False] / rates[128, PLAIN, False]
    sys.path.insert(0, str(Path(__file__).parent))
    from results import record

    record(
        "Cache build",
        [
            f"{len(split.images)} training images of 640x480, decoded into one cache entry (cold).",
            "",
            "| image_size | method | workers | build rate |",
            "|---|---|---|---|",
            *rows,
            "",
            f"At 128 px, processes over threads: **{over_threads:.2f}x**; draft over plain: **{draft_gain:.2f}x**.",
        ],
        "`.venv/bin/python benchmarks/cache_build.py`",
    )
    print(f"processes_over_threads={over_threads:.2f} draft_over_plain_128={draft_gain:.2f}")


if __name__ == "__main__":
    main()
