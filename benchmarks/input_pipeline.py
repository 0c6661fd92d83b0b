"""Input pipeline: the original project's approach against flowops' tf.data pipeline.

    .venv/bin/python benchmarks/input_pipeline.py [--images 600] [--epochs 3]

One generated COCO-format dataset (640x480 JPEGs, person/car/dog), both sides feeding a
training step 256x256 batches of 8 with augmentation on, measured in one process. (a) hands
over augmented float32 images and one-hot masks made on the host; (b) hands over uint8
batches that the step itself augments and encodes, on the GPU:

(a) the original approach, re-implemented faithfully: a Keras Sequence whose __getitem__
    decodes every JPEG, redraws every mask with cv2.fillPoly, and augments in Python
    with OpenCV (flip, zoom-and-crop, small rotation, blur, brightness/contrast), with 4
    worker threads as `fit(workers=4)` ran it. imgaug itself needs numpy < 2; measured in
    such a venv, the same imgaug pipeline costs ~1.0 ms per 256x256 image against ~0.4 ms
    here, so this baseline is if anything faster than the original was;
(b) flowops: the decoded uint8 cache (built during the first epoch, cold) and the tf.data
    pipeline that shuffles and batches it. Augmentation (the same zoom-crop, flip and
    brightness/contrast), the float cast and the one-hot encoding run inside the training
    step, on the GPU (flowops.segmentation.training.augment): that is what the host must sustain to feed it;
(c) for the record, flowops with that in-step preparation also run on this CPU, as a
    CPU-only runner trains;
(d) the host pipeline's first epoch from a warm cache (a runner that has trained on this
    dataset before);
(e) the host pipeline reading its batches from the entry's files, as it does for entries over
    the in-memory budget (FLOWOPS_IN_MEMORY_MB): what a COCO-scale split runs at.

Then the ceiling of a cold first epoch, decoding alone on all cores, and what shrinking a decoded
image costs by method. The last line is `steady_state_ratio=X first_epoch_ratio=Y ...
cold_fraction_of_decode_ceiling=Z` (images/s, (b) over (a); (b)'s cold epoch over the ceiling).
Needs opencv-python-headless (`pip install '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SIZE, BATCH, CATEGORIES = 256, 8, ["person", "car", "dog"]
STEADY_S = 2.0


class OriginalSequence:
    """The original data generator: everything in Python, every epoch."""

    def __init__(self, root: Path, seed: int = 0):
        import cv2  # noqa: F401

        doc = json.loads((root / "annotations" / "instances_train.json").read_text())
        ids = {
            c["id"]: i + 1 for c in doc["categories"] if c["name"] in CATEGORIES for i in [CATEGORIES.index(c["name"])]
        }
        by_image: dict[int, list] = {}
        for ann in doc["annotations"]:
            if ann["category_id"] in ids and not ann["iscrowd"]:
                by_image.setdefault(ann["image_id"], []).append(ann)
        self.items = [
            (root / "train" / im["file_name"], by_image.get(im["id"], []))
            for im in doc["images"]
            if im["id"] in by_image
        ]
        self.ids, self.rng = ids, np.random.default_rng(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.items) / BATCH)

    def load(self, path: Path, anns: list) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = np.zeros(image.shape[:2], dtype=np.uint8)
        for ann in anns:
            for part in ann["segmentation"]:
                cv2.fillPoly(
                    mask,
                    [np.array(part, dtype=np.float32).reshape(-1, 2).astype(np.int32)],
                    self.ids[ann["category_id"]],
                )
        image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
        return self.augment(image, mask)

    def augment(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        rng = np.random.default_rng(self.rng.integers(1 << 31))
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        scale, angle = rng.uniform(1.0, 1.25), rng.uniform(-10, 10)
        matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
        image = cv2.warpAffine(
            np.ascontiguousarray(image), matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        mask = cv2.warpAffine(
            np.ascontiguousarray(mask), matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
        )
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.1, 1.0))
        image = image.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-25, 25)
        mean = image.mean()
        image = np.clip((image - mean) * rng.uniform(0.8, 1.2) + mean, 0, 255)
        return image, mask

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.load(*item) for item in self.items[index * BATCH : (index + 1) * BATCH]]
        images = np.stack([p[0] for p in pairs]).astype(np.float32)
        masks = np.eye(len(CATEGORIES) + 1, dtype=np.float32)[np.stack([p[1] for p in pairs])]
        return images, masks


def original_epoch(seq: OriginalSequence) -> int:
    """One epoch as fit(workers=4, use_multiprocessing=False) ran it: 4 threads, batches in order."""
    with ThreadPoolExecutor(4) as pool:
        return sum(len(x) for x, _ in pool.map(seq.__getitem__, range(len(seq))))


def decode_ceiling(root: Path) -> tuple[str, float]:
    """(library, images/s): decoding alone of the same JPEGs, read from memory, on all cores.

    The cold first epoch must decode every image once; nothing it does can beat this rate, so
    its fraction of it says how much of the epoch goes to everything else (resize, masks,
    hashing, writing, waiting). libjpeg-turbo through PIL and through OpenCV, the faster counts.
    """
    import io

    import cv2
    from PIL import Image

    blobs = [path.read_bytes() for path in sorted((root / "train").glob("*.jpg"))]

    def with_pil(data: bytes) -> int:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.width

    def with_cv2(data: bytes) -> int:
        return int(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[1])

    cv2.setNumThreads(1)  # one image per thread, as the pool gives them
    rates = {}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for name, decode in (("PIL", with_pil), ("OpenCV", with_cv2)):
            list(pool.map(decode, blobs[:16]))  # warm up
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                list(pool.map(decode, blobs))
                best = max(best, len(blobs) / (time.perf_counter() - start))
            rates[name] = best
    library = max(rates, key=rates.__getitem__)
    return library, rates[library]


def resize_costs(root: Path) -> list[tuple[str, float, float]]:
    """(method, ms per image on one core from the JPEG's bytes to SIZE x SIZE, mean absolute grey-level
    difference from the plain method) for the first 200 images: flowops' methods (flowops.segmentation.preprocess)
    and OpenCV's anti-aliased INTER_AREA for comparison. Masks are drawn from the annotations at
    SIZE whatever the method, so they agree exactly; only the images differ."""
    import cv2

    from flowops.segmentation.preprocess import DRAFT, NEAR, PLAIN, decode_for, resize_image

    blobs = [path.read_bytes() for path in sorted((root / "train").glob("*.jpg"))[:200]]

    def flowops_method(method: str):
        return lambda data: resize_image(decode_for(data, SIZE, method)[1], SIZE)

    def opencv_area(data: bytes) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (SIZE, SIZE), interpolation=cv2.INTER_AREA)

    methods = {
        f"{PLAIN} (before {DRAFT}; the same here)": flowops_method(PLAIN),
        f"{NEAR} (the cache's method now)": flowops_method(NEAR),
        "OpenCV decode + INTER_AREA": opencv_area,
    }
    cv2.setNumThreads(1)
    reference = [flowops_method(PLAIN)(data) for data in blobs]
    out = []
    for name, run in methods.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            resized = [run(data) for data in blobs]
            best = min(best, (time.perf_counter() - start) * 1000 / len(blobs))
        diff = float(
            np.mean([np.abs(r.astype(np.int16) - ref).mean() for r, ref in zip(resized, reference, strict=True)])
        )
        out.append((name, best, diff))
    return out


def build_profile(root: Path, categories: list[str]) -> list[tuple[str, float]]:
    """(stage, ms per image on one core) of what the cold build does to each image, as
    flowops.segmentation.data.cache._decode does it, best of three over the first 200 training images. Their
    sum bounds a cold epoch on N cores at N / sum images/s; decoding's share bounds its fraction
    of the decode-only ceiling."""
    import hashlib

    from flowops.segmentation.data import cache
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.data.masks import draw_mask
    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.segmentation.preprocess import METHOD, decode_for, resize_image

    spec = ExperimentSpec.model_validate(
        {"name": "bench", "categories": categories, "image_size": SIZE, "dataset": {"root": str(root)}}
    )
    split = open_split(spec, "train")
    jobs = [cache._job(split, image, SIZE) for image in split.images[:200]]
    blobs = [Path(job["path"]).read_bytes() for job in jobs]
    decoded = [decode_for(data, SIZE, METHOD)[1] for data in blobs]
    for image in decoded:
        image.load()
    stages = {
        "read the file": lambda k: Path(jobs[k]["path"]).read_bytes(),
        "sha256 of the bytes": lambda k: hashlib.sha256(blobs[k]).digest(),
        f"decode ({METHOD}: EXIF read, libjpeg at the draft scale)": lambda k: decode_for(blobs[k], SIZE, METHOD)[
            1
        ].load(),
        "resize to the target (PIL bilinear, anti-aliased)": lambda k: resize_image(decoded[k], SIZE),
        "draw the mask (pycocotools, at the target size)": lambda k: draw_mask(
            jobs[k]["anns"], jobs[k]["image"], jobs[k]["class_of"], SIZE, []
        ),
    }
    out = []
    for name, stage in stages.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for k in range(len(jobs)):
                stage(k)
            best = min(best, (time.perf_counter() - start) * 1000 / len(jobs))
        out.append((name, best))
    return out


def flowops_run(root: Path, cache: Path, epochs: int, prepare_on_cpu: bool) -> list[tuple[int, float]]:
    """(images, seconds) for the first epoch and for the later ones, as `flowops train` feeds them:
    the first epoch reads the training split's entry while it is built (flowops.segmentation.data.stream; a warm
    entry is read the same way), the later epochs the whole entry (loading it counts in them).
    Records the seconds to the first batch in FIRST_BATCH_S."""
    os.environ["FLOWOPS_CACHE_DIR"] = str(cache)
    import tensorflow as tf

    from flowops.segmentation.data import stream
    from flowops.segmentation.data.coco import open_split
    from flowops.segmentation.data.pipeline import first_epoch_dataset, make_dataset
    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.segmentation.training.augment import prepare_batch

    spec = ExperimentSpec.model_validate(
        {"name": "bench", "categories": CATEGORIES, "image_size": SIZE, "dataset": {"root": str(root)}}
    )
    seeds = tf.random.Generator.from_seed(0)
    step = tf.function(
        lambda x, y: prepare_batch(x, y, len(CATEGORIES) + 1, seeds.make_seeds(1)[:, 0])
    )  # as Trainer.train_step
    # TensorFlow's one-time start (runtime, tf.data) is paid by any Keras training, the original's
    # included (fit wraps its Sequence in tf.data): it is not part of either input pipeline.
    list(tf.data.Dataset.from_tensor_slices(np.zeros((2, 2), np.uint8)).shuffle(2).batch(1))

    def consume(ds, first: bool = False) -> int:
        n = 0
        for x, y in ds:
            if prepare_on_cpu:
                x, y = step(x, y)
            if first and n == 0:
                FIRST_BATCH_S.append(time.perf_counter() - start)
            n += int(x.shape[0])
        return n

    start = time.perf_counter()
    building = stream.start(open_split(spec, "train"), CATEGORIES, SIZE)
    first = consume(first_epoch_dataset(building, SIZE, BATCH, training=True, seed=0), first=True)
    out = [(first, time.perf_counter() - start)]
    start = time.perf_counter()
    cached = building.result()
    building.close()
    ds = make_dataset(cached.images, cached.masks, BATCH, training=True, seed=0)
    later, epochs_run, steady_s = 0, 1, 0.0
    while epochs_run < epochs or steady_s < STEADY_S:  # later epochs: at least STEADY_S of them, for a stable rate
        later += consume(ds)
        epochs_run += 1
        steady_s = time.perf_counter() - start
    return [out[0], (later, steady_s)]


FIRST_BATCH_S: list[float] = []  # seconds to the first batch, per flowops_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images",
        type=int,
        default=600,
        help="training images generated (about 85%% hold a selected category; 25%% more for validation)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", type=Path, help="reuse a generated dataset here")
    args = parser.parse_args()
    from flowops.segmentation.data.synth import generate

    tmp = Path(tempfile.mkdtemp())
    root = args.data or tmp / "coco640"
    if not (root / "annotations" / "instances_train.json").exists():
        print(f"generating {args.images} 640x480 training images in {root} ...", flush=True)
        generate(root, images=round(args.images / 0.8), width=640, height=480, seed=1)

    seq = OriginalSequence(root)
    original = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        n = original_epoch(seq)
        original.append((n, time.perf_counter() - start))
        print(
            f"original epoch {len(original)}: {n} images in {original[-1][1]:.1f} s = "
            f"{n / original[-1][1]:.0f} images/s",
            flush=True,
        )
    rate = lambda runs: sum(n for n, _ in runs) / sum(s for _, s in runs)  # noqa: E731
    results = {}
    for label, cache, on_cpu in [
        ("host", tmp / "cache", False),
        ("cpu", tmp / "cache-cpu", True),
        ("warm", tmp / "cache", False),
        ("streamed", tmp / "cache", False),
    ]:
        os.environ["FLOWOPS_IN_MEMORY_MB"] = "0" if label == "streamed" else "512"
        results[label] = runs = flowops_run(root, cache, args.epochs, on_cpu)
        for what, (n, s) in zip(("first epoch", "later epochs"), runs, strict=True):
            print(f"flowops ({label}) {what}: {n} images in {s:.2f} s = {n / s:.0f} images/s", flush=True)
    first = rate(results["host"][:1]) / rate(original[:1])
    steady = rate(results["host"][1:]) / rate(original[1:])
    cpu_first, cpu_steady = rate(results["cpu"][:1]) / rate(original[:1]), rate(results["cpu"][1:]) / rate(original[1:])
    warm_first = rate(results["warm"][:1]) / rate(original[:1])
    streamed_steady = rate(results["streamed"][1:]) / rate(original[1:])
    library, ceiling = decode_ceiling(root)
    cold_fraction = rate(results["host"][:1]) / ceiling
    print(f"decode-only ceiling ({library}, {os.cpu_count()} threads): {ceiling:.0f} images/s", flush=True)
    resizes = resize_costs(root)
    for name, ms, diff in resizes:
        print(f"decode+resize {name}: {ms:.2f} ms per image, {diff:.2f} grey levels from plain", flush=True)
    profile = build_profile(root, CATEGORIES)
    work = sum(ms for _, ms in profile)
    decode_ms = next(ms for name, ms in profile if name.startswith("decode"))
    for name, ms in profile:
        print(f"cold build, per image: {name}: {ms:.2f} ms", flush=True)
    # The ceiling decodes on all cores with whatever scaling this machine gives threads; the build's
    # other stages scale no better, so the build reaches at most decoding's share of its work.
    bound = decode_ms / work
    print(
        f"cold build work {work:.2f} ms per image, decoding {bound:.0%} of it: at most {bound:.2f} of the "
        f"ceiling ({bound * ceiling:.0f} images/s)",
        flush=True,
    )
    first_batch = FIRST_BATCH_S[0]
    print(f"flowops (host) cold: first batch after {first_batch:.2f} s", flush=True)
    sys.path.insert(0, str(Path(__file__).parent))
    from results import record

    record(
        "Input pipeline",
        [
            f"{len(seq.items)} training images of 640x480 (person, car, dog), 256x256 batches of 8, augmentation on.",
            "",
            "| | first epoch | steady state (epochs 2-3) | ratio first / steady |",
            "|---|---|---|---|",
            f"| (a) original approach (Sequence, cv2.fillPoly, Python augmentation, 4 threads) | "
            f"{rate(original[:1]):.0f} images/s | {rate(original[1:]):.0f} images/s | 1 / 1 |",
            f"| **(b) flowops host pipeline** (cold cache built in epoch 1, tf.data; augmentation in the GPU "
            f"step) | {rate(results['host'][:1]):.0f} images/s | {rate(results['host'][1:]):.0f} images/s "
            f"| **{first:.1f}x / {steady:.1f}x** |",
            f"| (c) flowops with the step's augmentation, cast and one-hot also on this CPU (CPU-only runner) "
            f"| {rate(results['cpu'][:1]):.0f} images/s | {rate(results['cpu'][1:]):.0f} images/s "
            f"| {cpu_first:.1f}x / {cpu_steady:.1f}x |",
            f"| (d) flowops host pipeline, warm cache (a runner that has seen the dataset) | "
            f"{rate(results['warm'][:1]):.0f} images/s | | {warm_first:.1f}x / |",
            f"| (e) flowops host pipeline reading batches from the files (entries over the in-memory budget) | "
            f"| {rate(results['streamed'][1:]):.0f} images/s | / {streamed_steady:.1f}x |",
            "",
            "The ceiling of a cold first epoch: decoding alone of the same JPEGs, read from memory, on all "
            f"cores ({library}, libjpeg-turbo, the faster here of PIL and OpenCV): **{ceiling:.0f} images/s**; "
            f"(b)'s cold first epoch is **{cold_fraction:.2f}** of it, (a)'s {rate(original[:1]) / ceiling:.2f}. "
            f"(b)'s first batch came {first_batch:.2f} s after the start (the entry is read as it is built).",
            "",
            "What the cold build does to each image, one core (first 200 images, best of three): decoding is "
            f"{bound:.0%} of the work, so with nothing else to pay a cold epoch reaches at most **{bound:.2f} of "
            f"the ceiling** ({bound * ceiling:.0f} images/s here; the other stages scale over cores no better "
            "than decoding does).",
            "",
            "| stage | ms per image |",
            "|---|---|",
            *[f"| {name} | {ms:.2f} |" for name, ms in profile],
            f"| **all** | **{work:.2f}** |",
            "",
            f"From a 640x480 JPEG's bytes to {SIZE}x{SIZE} pixels, one core (first 200 images; the masks are "
            "drawn from the annotations at that size whatever the method, so they agree exactly):",
            "",
            "| method | ms per image | mean difference from plain (grey levels) |",
            "|---|---|---|",
            *[f"| {name} | {ms:.2f} | {diff:.2f} |" for name, ms, diff in resizes],
        ],
        "`.venv/bin/python benchmarks/input_pipeline.py`",
    )
    print(
        f"steady_state_ratio={steady:.1f} first_epoch_ratio={first:.1f} streamed_ratio={streamed_steady:.1f} "
        f"cold_fraction_of_decode_ceiling={cold_fraction:.2f}"
    )


if __name__ == "__main__":
    main()
