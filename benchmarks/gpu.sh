#!/usr/bin/env bash
# GPU training throughput: one script, under 8 minutes on one GPU. Prints a summary table and
# writes it to $OUT/gpu-benchmark.md (or ./gpu-benchmark.md).
#   (a) synthetic in-memory uint8 batches (compute bound; the step still augments them) vs
#   (b) the real host pipeline from the decoded cache -> data-stall fraction 1 - b/a (target <= 5 %)
#   mixed precision on/off (target >= 1.8x), XLA on/off, what in-step augmentation costs, and
#   images/s for 2..N replicas (one MirroredStrategy over the runner's GPUs, batch 16 per replica).
# Needs the gpu extra: pip install -e '.[gpu]'. Run from the repository root.
# SMOKE=1 runs every configuration for two steps on whatever device there is (a check that the
# script works, e.g. on a CPU machine before a GPU is lent); its numbers mean nothing. With
# SMOKE=1 FLOWOPS_CPU_REPLICAS=2 the replica rows run on two logical CPU devices.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT_FILE=${OUT:-.}/gpu-benchmark.md
if [ "${SMOKE:-0}" = 1 ]; then STEPS=2; else STEPS=60; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
[ -f data/synth/annotations/instances_val.json ] || $PY -m flowops.cli data synth --out data/synth --images 600 --size 320x256
STEPS=$STEPS PYTHONPATH=src timeout 480 $PY - "$OUT_FILE" <<'PY'
import os, sys, time
os.environ.setdefault("FLOWOPS_CACHE_DIR", ".flowops/cache")
from flowops.segmentation.tfenv import configure_tensorflow
from flowops.segmentation.training.model import build_model, training_model
configure_tensorflow()
import tensorflow as tf, tf_keras
from flowops.segmentation.data.cache import load_split
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.data.pipeline import make_dataset
from flowops.spec.experiment import ExperimentSpec

STEPS = int(os.environ["STEPS"])
SIZE, BATCH = (64, 2) if STEPS < 10 else (256, 16)  # SMOKE=1: small, to check the script on a CPU
spec = ExperimentSpec.model_validate({"name": "gpu", "categories": ["person", "car", "dog"], "image_size": SIZE, "dataset": {"root": "data/synth"}})
cached = load_split(open_split(spec, "train"), spec.categories, SIZE)

DEVICES = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]

def throughput(mixed: bool, xla: bool, real: bool, augment: bool = True, replicas: int = 1) -> float:
    """images/s; `replicas` > 1: one MirroredStrategy over that many devices, BATCH per replica."""
    tf_keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = tf.distribute.MirroredStrategy(DEVICES[:replicas]) if replicas > 1 else tf.distribute.get_strategy()
    batch = BATCH * replicas
    model = build_model("Unet", "resnet18", 4, SIZE, None, strategy=strategy)
    trainer = training_model(model, 4, 1e-3, augment=augment, seed=0, jit_compile=xla, strategy=strategy)
    if real:
        ds = make_dataset(cached.images, cached.masks, batch, training=True, seed=0, whole_batches=True).repeat()
    else:
        x = tf.cast(tf.random.uniform((batch, SIZE, SIZE, 3), 0, 256, tf.int32), tf.uint8)
        y = tf.cast(tf.random.uniform((batch, SIZE, SIZE), 0, 4, tf.int32), tf.uint8)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    trainer.fit(ds, steps_per_epoch=min(STEPS, 10), epochs=1, verbose=0)  # warm-up, compilation
    start = time.perf_counter()
    trainer.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    return STEPS * batch / (time.perf_counter() - start)

rows, failed = {}, {}
for name, args in [("fp32 synthetic", (False, False, False)), ("mixed synthetic", (True, False, False)),
                   ("mixed synthetic, no augmentation", (True, False, False, False)),
                   ("mixed+XLA synthetic", (True, True, False)), ("mixed real pipeline", (True, False, True)),
                   *[(f"mixed synthetic, {k} replicas", (True, False, False, True, k)) for k in range(2, len(DEVICES) + 1)]]:
    try:
        rows[name] = throughput(*args)
    except Exception as exc:  # one configuration failing (XLA lacking an op, say) must not lose the others
        lines = [line for line in str(exc).splitlines() if "No registered" in line] or str(exc).strip().splitlines()[:1]
        failed[name] = f"{type(exc).__name__}: {lines[0].strip()[:200]}"
    print(name, rows.get(name, failed.get(name)), flush=True)
ratio = lambda a, b: f"{rows[a] / rows[b]:.2f}x" if a in rows and b in rows else "n/a"  # noqa: E731
lines = ["| configuration | images/s |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in rows.items()],
         *[f"| {k} | failed: {v} |" for k, v in failed.items()],
         f"| data-stall fraction (target <= 5 %) | {1 - rows['mixed real pipeline'] / rows['mixed synthetic']:.1%} |" if "mixed real pipeline" in rows and "mixed synthetic" in rows else "| data-stall fraction | n/a |",
         f"| mixed precision speed-up (target >= 1.8x) | {ratio('mixed synthetic', 'fp32 synthetic')} |",
         f"| XLA speed-up on top | {ratio('mixed+XLA synthetic', 'mixed synthetic')} |",
         f"| in-step augmentation cost (no augmentation / with) | {ratio('mixed synthetic, no augmentation', 'mixed synthetic')} |",
         *[f"| {k} replicas: images/s per replica, scaling efficiency | {rows[n] / k:.0f}, {rows[n] / k / rows['mixed synthetic']:.0%} |"
           for k in range(2, len(DEVICES) + 1) for n in [f"mixed synthetic, {k} replicas"] if n in rows and "mixed synthetic" in rows]]
gpus = tf.config.list_physical_devices("GPU")
device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "?") if gpus else "none (CPU)"
text = f"GPU: {device}, batch {BATCH}, {STEPS} steps per measurement\n\n" + "\n".join(lines) + "\n"
print(text)
open(sys.argv[1], "w").write(text)
PY
