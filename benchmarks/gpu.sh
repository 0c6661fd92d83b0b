#!/usr/bin/env bash
# GPU training throughput: one script, under 8 minutes on one GPU. Prints a summary table and
# writes it to $OUT/gpu-benchmark.md (or ./gpu-benchmark.md).
#   (a) synthetic in-memory tensors (compute bound) vs (b) the real pipeline from the cache
#       -> data-stall fraction 1 - b/a (target <= 5 %)
#   mixed precision on/off (target >= 1.8x), XLA on/off.
# Needs the gpu extra: pip install -e '.[gpu]'. Run from the repository root.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT_FILE=${OUT:-.}/gpu-benchmark.md
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -f data/synth/annotations/instances_val.json ] || $PY -m flowops.cli data synth --out data/synth --images 600 --size 320x256
PYTHONPATH=src timeout 480 $PY - "$OUT_FILE" <<'PY'
import os, sys, time
os.environ.setdefault("FLOWOPS_CACHE_DIR", ".flowops/cache")
from flowops.model import build_model, configure_tensorflow
configure_tensorflow()
import numpy as np, tensorflow as tf, tf_keras
from flowops.data.cache import load_split
from flowops.data.coco import open_split
from flowops.data.pipeline import make_dataset
from flowops.spec import ExperimentSpec

SIZE, BATCH, STEPS = 256, 16, 60
spec = ExperimentSpec.model_validate({"name": "gpu", "categories": ["person", "car", "dog"], "image_size": SIZE, "dataset": {"root": "data/synth"}})
cached = load_split(open_split(spec, "train"), spec.categories, SIZE)

def throughput(mixed: bool, xla: bool, real: bool) -> float:
    tf_keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    model = build_model("Unet", "resnet18", 4, SIZE, None, 1e-3)
    model.compile(model.optimizer, loss=model.loss, jit_compile=xla)
    if real:
        ds = make_dataset(cached.images, cached.masks, 4, BATCH, training=True, augment_images=True, seed=0).repeat()
    else:
        x = tf.random.uniform((BATCH, SIZE, SIZE, 3), 0, 255)
        y = tf.one_hot(tf.random.uniform((BATCH, SIZE, SIZE), 0, 4, tf.int32), 4)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0)  # warm-up, compilation
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    return STEPS * BATCH / (time.perf_counter() - start)

rows = {}
for name, mixed, xla, real in [("fp32 synthetic", False, False, False), ("mixed synthetic", True, False, False),
                               ("mixed+XLA synthetic", True, True, False), ("mixed real pipeline", True, False, True)]:
    rows[name] = throughput(mixed, xla, real)
stall = 1 - rows["mixed real pipeline"] / rows["mixed synthetic"]
lines = ["| configuration | images/s |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in rows.items()],
         f"| data-stall fraction (target <= 5 %) | {stall:.1%} |",
         f"| mixed precision speed-up (target >= 1.8x) | {rows['mixed synthetic'] / rows['fp32 synthetic']:.2f}x |",
         f"| XLA speed-up on top | {rows['mixed+XLA synthetic'] / rows['mixed synthetic']:.2f}x |"]
text = f"GPU: {tf.config.experimental.get_device_details(tf.config.list_physical_devices('GPU')[0]).get('device_name', '?')}\n\n" + "\n".join(lines) + "\n"
print(text)
open(sys.argv[1], "w").write(text)
PY
