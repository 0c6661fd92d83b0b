"""Peak memory of building the decoded cache and running one epoch of the host pipeline.

    .venv/bin/python benchmarks/memory.py --images 1000
    .venv/bin/python benchmarks/memory.py --images 1000,4000 --record

Generates N 640x480 training images (synthetic COCO format, person/car/dog), then, in a fresh
process per N, builds the cache at 256 px and iterates one epoch of `make_dataset` (batches of
8, shuffled) as training does, and reads the process's peak resident set (VmHWM, which counts
memory-mapped file pages a process touches, as well as its own). The last line of each child
is `peak_rss_mb=X images=N`. Target: N=4000 within 1.2x of N=1000, and at most 1.5 GB at N=10000.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import os, sys, time
from pathlib import Path
os.environ["FLOWOPS_CACHE_DIR"] = sys.argv[2]
from flowops.segmentation.data import cache
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.data.pipeline import make_dataset
from flowops.segmentation.experiment import ExperimentSpec

spec = ExperimentSpec.model_validate(
    {"name": "mem", "categories": ["person", "car", "dog"], "image_size": 256, "dataset": {"root": sys.argv[1]}}
)
start = time.perf_counter()
split = cache.load_split(open_split(spec, "train"), spec.categories, spec.image_size)
built = time.perf_counter() - start
n = 0
for images, masks in make_dataset(split.images, split.masks, 8, training=True, seed=0):
    n += int(images.shape[0])
epoch = time.perf_counter() - start - built
peak = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(f"build {built:.1f} s, epoch {epoch:.1f} s, {n} images")
print(f"peak_rss_mb={peak / 1024:.0f} images={len(split.file_names)}")
"""


def measure(images: int, work: Path) -> tuple[float, str]:
    from flowops.segmentation.data.synth import generate

    root = work / f"data-{images}"
    if not root.exists():
        print(f"generating {images} 640x480 images ...", flush=True)
        # train gets ~5/6 of the images: ask for enough that the training split has `images`
        generate(root, images=int(images * 1.2), width=640, height=480, seed=1)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(work / f"cache-{images}")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(out, flush=True)
    last = out.splitlines()[-1]
    return float(last.split()[0].split("=")[1]), out.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1000", help="comma-separated image counts")
    parser.add_argument("--record", action="store_true", help="write the result into docs/BENCHMARKS.md")
    args = parser.parse_args()
    counts = [int(c) for c in args.images.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            results[count] = measure(count, Path(tmp))
    base = results[counts[0]][0]
    for count, (mb, _) in results.items():
        print(f"images={count} peak_rss_mb={mb:.0f} ratio_to_{counts[0]}={mb / base:.2f}")
    if args.record:
        from results import record

        lines = [
            "| images (train split) | peak RSS | vs the smallest | cache build and epoch |",
            "|---:|---:|---:|---|",
            *[f"| {count} | {mb:.0f} MB | {mb / base:.2f}x | {detail} |" for count, (mb, detail) in results.items()],
        ]
        record("Memory: cache build and one epoch", lines, f"benchmarks/memory.py --images {args.images}")
    print(time.strftime("%Y-%m-%d %H:%M"))


if __name__ == "__main__":
    main()
