"""Decoded, resized images and masks, cached so later epochs and reruns never decode a JPEG.

The key covers the annotation file, the categories, the size and each image used, by name and
content (its sha256 from the download manifest, else its size and modification time, so a
replaced or newly downloaded image makes a new entry). An entry is built as it is decoded, a
chunk at a time, into a partial folder renamed into place when complete (flowops.segmentation.data.entry):
memory stays flat in the split's size, and a killed build resumes where it stopped.

A cache shared between jobs is not trusted: every hit is hashed and compared with the content
hash recorded when the entry was written, in the trusted index (FLOWOPS_CACHE_INDEX, a folder
only trusted jobs can write) when one is configured, else beside the entry. An entry that does
not match is decoded again from the dataset (and not written back), and a run's fingerprint
always covers the arrays it actually trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowops.errors import FlowopsError
from flowops.segmentation.data import entry
from flowops.segmentation.data.coco import Split
from flowops.segmentation.data.masks import draw_mask
from flowops.segmentation.preprocess import METHOD, decode_for, resize_image

CACHE_ENV = "FLOWOPS_CACHE_DIR"
INDEX_ENV = "FLOWOPS_CACHE_INDEX"  # content hashes recorded by trusted writers; PR jobs only read it
WRITER_ENV = "FLOWOPS_CACHE_WRITER"  # "trusted" in jobs on main or scheduled: they record hashes, replace bad entries
FORMAT = 7  # bump when the cached data change meaning (7: JPEG draft; 6: streamed .bin rows; 5: EXIF; 4: crowds 255)
MAX_SKIPPED_FRACTION = 0.1  # more unreadable images than this fails the training
# Large splits on many cores are decoded by processes: threads share the GIL for the mask drawing
# and glue (~15 % of an image's work), which caps them at ~7 cores; on few cores processes lose
# (their start and the pickled rows cost more than they win: docs/BENCHMARKS.md, "Cache build").
PROCESSES_FROM, PROCESSES_CORES = 2000, 8


@dataclass
class CachedSplit:
    images: np.ndarray  # (n, size, size, 3) uint8 RGB
    masks: np.ndarray  # (n, size, size) uint8 class indices
    file_names: list[str]
    fingerprint: str  # sha256 over the annotation file, every image file used and the decoded arrays
    skipped: list[str]  # unreadable images, left out
    hit: bool  # served from the cache
    source: str = ""  # sha256 over the annotation file and every image file used
    content: str = ""  # sha256 of the decoded arrays (flowops.segmentation.evaluation.eval_set_id uses it)
    skipped_annotations: list[str] = field(default_factory=list)  # degenerate ones, left out of the masks
    preprocess: str = METHOD  # how images were decoded and resized (flowops.segmentation.preprocess)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, ".flowops/cache"))


def cache_key(annotation_sha256: str, categories: list[str], size: int, stamps: dict[str, str] | None = None) -> str:
    text = json.dumps([FORMAT, METHOD, annotation_sha256, categories, size, sorted((stamps or {}).items())])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def image_stamps(split: Split) -> dict[str, str]:
    """Each used image's content stamp: its manifest sha256, else `size:mtime_ns` (missing: 'missing')."""
    from flowops.segmentation.data.fingerprint import manifest_hashes

    known = manifest_hashes(split.images_dir)
    stamps = {}
    for image in split.images:
        name = image["file_name"]
        if name in known and (split.images_dir / name).is_file():
            stamps[name] = known[name]
            continue
        try:
            st = (split.images_dir / name).stat()
            stamps[name] = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamps[name] = "missing"
    return stamps


def load_split(
    split: Split,
    categories: list[str],
    size: int,
    watch: Callable[[Path, int, bool], None] | None = None,
    stop: threading.Event | None = None,
) -> CachedSplit:
    """The split decoded at size x size: a verified cache entry, or built into the cache now.

    An entry that fails verification is rebuilt in place by a trusted writer; any other job
    decodes the split into a private folder of its own and leaves the shared entry alone.
    A build tells `watch(folder, n, last)` each time the first n rows of the folder's files are
    readable (`last`: no more will come), and ends early (entry.Stopped) once `stop` is set.
    """
    key = cache_key(split.annotation_sha256, categories, size, image_stamps(split))
    name = f"{key}-{split.name}"
    folder = cache_root() / key / split.name
    try:
        with entry.locked(cache_root() / key / f".{split.name}.lock"):
            replace = False
            if (folder / "meta.json").exists():
                hit = _verified_hit(folder, name)
                if hit is not None:
                    return hit
                if not _trusted_writer(_index_file(name)):
                    return _private(split, size, name, watch, stop)
                replace = True
            partial = folder.with_name(f".{split.name}.partial")
            return _build(split, size, partial, folder, name, watch, stop, replace=replace)
    except OSError as exc:  # a cache that cannot be written costs the entry, not the training
        print(f"flowops: could not write the decoded cache to {folder}: {exc}", file=sys.stderr)
        return _private(split, size, name, watch, stop)


def _private(split: Split, size: int, name: str, watch=None, stop=None) -> CachedSplit:
    """Decoded into a folder of this process's own: the shared cache is neither trusted nor touched."""
    folder = Path(tempfile.mkdtemp(prefix="flowops-private-cache-")) / split.name
    return _build(split, size, folder, folder, name, watch, stop, record=False)


def content_sha256(images: np.ndarray, masks: np.ndarray) -> str:
    """sha256 of the decoded arrays (shape, dtype and bytes), as training reads them."""
    digest = hashlib.sha256()
    for array in (images, masks):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data.cast("B"))
    return digest.hexdigest()


def _fingerprint(source: str, content: str) -> str:
    return hashlib.sha256(f"{source}:{content}".encode()).hexdigest()


def _index_file(name: str) -> Path | None:
    index = os.environ.get(INDEX_ENV)
    return Path(index) / f"{name}.sha256" if index else None


def _trusted_writer(index: Path | None) -> bool:
    """May this job record content hashes? Said by its workflow, enforced by the index folder's permissions."""
    return index is not None and os.environ.get(WRITER_ENV) == "trusted" and os.access(index.parent, os.W_OK)


def _verified_hit(folder: Path, name: str) -> CachedSplit | None:
    """The entry, memory-mapped, when its files hash to the recorded content hash; else None (and why)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        count, size = int(meta["count"]), int(meta["size"])
        content = entry.content_digest(folder / "images.bin", folder / "masks.bin", count, size)
        images, masks = entry.open_arrays(folder, count, size)
        source = meta["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"flowops: cache entry {folder} is unreadable ({exc}); decoding the dataset again", file=sys.stderr)
        return None
    index = _index_file(name)
    try:
        expected = index.read_text().strip() if index else meta.get("content_sha256")
    except OSError:
        expected = None
    if content != expected:
        where = f"the trusted index {index}" if index else "its meta.json"
        print(
            f"flowops: cache entry {folder} does not match the content hash in {where}; "
            "decoding the dataset again (the entry was changed after it was written, or never verified)",
            file=sys.stderr,
        )
        return None
    fingerprint = _fingerprint(source, content)
    dropped = meta.get("skipped_annotations", [])
    return CachedSplit(images, masks, meta["file_names"], fingerprint, meta["skipped"], True, source, content, dropped)


def _build(
    split: Split,
    size: int,
    partial: Path,
    folder: Path,
    name: str,
    watch: Callable[[Path, int, bool], None] | None = None,
    stop: threading.Event | None = None,
    replace: bool = False,
    record: bool = True,
) -> CachedSplit:
    """Decode the split into `partial` (resuming), check it, and put it in place at `folder`."""
    from flowops.segmentation.data.fingerprint import split_source

    progress = entry.build(
        partial,
        split.images,
        size,
        lambda image: _job(split, image, size),
        _decode,
        processes=len(split.images) >= PROCESSES_FROM and (os.cpu_count() or 1) >= PROCESSES_CORES,
        on_rows=None if watch is None else lambda rows, last: watch(partial, rows, last),
        stop=stop,
    )
    kept, skipped = progress["kept"], progress["skipped"]
    if len(skipped) > MAX_SKIPPED_FRACTION * len(split.images) or not kept:
        shutil.rmtree(partial, ignore_errors=True)  # nothing worth resuming: the data must be fixed first
        first = skipped[0] if skipped else "no image"
        raise FlowopsError(
            f"{split.images_dir}: {len(skipped)} of {len(split.images)} images unreadable (limit "
            f"{MAX_SKIPPED_FRACTION:.0%}); first: {first}"
        )
    content = entry.content_digest(partial / "images.bin", partial / "masks.bin", len(kept), size)
    source = split_source(split.annotation_sha256, progress["hashes"])
    meta = {
        "count": len(kept),
        "size": size,
        "file_names": kept,
        "fingerprint": source,
        "content_sha256": content,
        "skipped": skipped,
        "skipped_annotations": progress["dropped"],
        "preprocess": METHOD,
    }
    if partial != folder:
        entry.finish(partial, folder, meta, replace)
    else:
        (partial / "progress.jsonl").unlink(missing_ok=True)
        (partial / "meta.json").write_text(json.dumps(meta))
    index = _index_file(name)
    if record and index is not None and _trusted_writer(index):
        index.write_text(content + "\n")
    images, masks = entry.open_arrays(folder, len(kept), size)
    fingerprint = _fingerprint(source, content)
    return CachedSplit(images, masks, kept, fingerprint, skipped, False, source, content, progress["dropped"])


def _job(split: Split, image: dict, size: int) -> dict:
    """Everything decoding one image needs, and nothing more (it travels to a worker process)."""
    coco: Any = split.coco
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]], catIds=list(split.class_of), iscrowd=None))
    return {
        "path": str(split.images_dir / image["file_name"]),
        "image": image,
        "anns": anns,
        "class_of": split.class_of,
        "size": size,
        "method": METHOD,
    }


def _decode(job: dict):
    """(file name, (image, mask, dropped annotations) or None, sha256 or None, error or None) of one job."""
    image, size = job["image"], job["size"]
    try:
        raw = Path(job["path"]).read_bytes()  # read once: hashed and decoded from memory
        full, rgb = decode_for(
            raw, size, job["method"]
        )  # EXIF orientation applied: annotations are drawn on the image as seen
        if full != (image["width"], image["height"]):
            return (
                image["file_name"],
                None,
                None,
                f"{image['file_name']}: image is {full[0]}x{full[1]}, annotations say "
                f"{image['width']}x{image['height']}",
            )
        resized = resize_image(rgb, size)
    except (OSError, SyntaxError, ValueError) as exc:
        return image["file_name"], None, None, f"{image['file_name']}: {exc}"
    dropped: list[str] = []
    mask = draw_mask(job["anns"], image, job["class_of"], size, dropped)
    return image["file_name"], (resized, mask, dropped), hashlib.sha256(raw).hexdigest(), None
