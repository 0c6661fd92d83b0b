"""Decoded, resized images and masks, cached so later epochs and reruns never decode a JPEG.

The key covers the annotation file, the categories, the size and each image used, by name and
content (its sha256 from the download manifest, else its size and modification time, so a
replaced or newly downloaded image makes a new entry). Entries are written to a temporary folder
and renamed into place, so an interrupted build never looks complete.

A cache shared between jobs is not trusted: every hit is hashed and compared with the content
hash recorded when the entry was written, in the trusted index (FLOWOPS_CACHE_INDEX, a folder
only trusted jobs can write) when one is configured, else beside the entry. An entry that does
not match is decoded again from the dataset (and not written back), and a run's fingerprint
always covers the arrays it actually trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from flowops.data.coco import Split
from flowops.data.masks import class_mask
from flowops.data.preprocess import resize_image, upright
from flowops.errors import FlowopsError

CACHE_ENV = "FLOWOPS_CACHE_DIR"
INDEX_ENV = "FLOWOPS_CACHE_INDEX"  # content hashes recorded by trusted writers; PR jobs only read it
WRITER_ENV = "FLOWOPS_CACHE_WRITER"  # "trusted" in jobs on main or scheduled: they record hashes, replace bad entries
FORMAT = (
    4  # bump when the cached arrays change meaning (4: crowds are 255; 3: content hashes; 2: masks at the cache size)
)
MAX_SKIPPED_FRACTION = 0.1  # more unreadable images than this fails the training
_WRITERS: list[threading.Thread] = []


@dataclass
class CachedSplit:
    images: np.ndarray  # (n, size, size, 3) uint8 RGB
    masks: np.ndarray  # (n, size, size) uint8 class indices
    file_names: list[str]
    fingerprint: str  # sha256 over the annotation file, every image file used and the decoded arrays
    skipped: list[str]  # unreadable images, left out
    hit: bool  # served from the cache
    source: str = ""  # sha256 over the annotation file and every image file used
    content: str = ""  # sha256 of the decoded arrays (flowops.evaluation.eval_set_id uses it)
    skipped_annotations: list[str] = field(default_factory=list)  # degenerate ones, left out of the masks


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, ".flowops/cache"))


def cache_key(annotation_sha256: str, categories: list[str], size: int, stamps: dict[str, str] | None = None) -> str:
    text = json.dumps([FORMAT, annotation_sha256, categories, size, sorted((stamps or {}).items())])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def image_stamps(split: Split) -> dict[str, str]:
    """Each used image's content stamp: its manifest sha256, else `size:mtime_ns` (missing: 'missing')."""
    from flowops.data.fingerprint import manifest_hashes

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


def load_split(split: Split, categories: list[str], size: int) -> CachedSplit:
    """The split decoded at size x size: from the cache, or built now and written in the background.

    Training starts on the arrays in memory while a thread writes them to the cache; the
    process waits for that thread before it exits (or call `wait_for_writes`).
    """
    key = cache_key(split.annotation_sha256, categories, size, image_stamps(split))
    folder = cache_root() / key / split.name
    if (folder / "meta.json").exists():
        hit = _verified_hit(folder, f"{key}-{split.name}")
        if hit is not None:
            return hit
        if not _trusted_writer(_index_file(f"{key}-{split.name}")):
            return _build(split, size)  # decoded again; the bad entry is left for a trusted job to replace
    built = _build(split, size)
    writer = threading.Thread(
        target=_write, args=(built, folder, f"{key}-{split.name}"), name=f"flowops-cache-{split.name}"
    )
    writer.start()  # not a daemon: the interpreter joins it at exit
    _WRITERS.append(writer)
    return built


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
    """The entry, memory-mapped, when its arrays hash to the recorded content hash; else None (and why)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")  # the page cache holds it, not a second copy
        masks = np.load(folder / "masks.npy", mmap_mode="r")
        source = meta["fingerprint"]
        content = content_sha256(images, masks)
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


def wait_for_writes() -> None:
    """Block until every cache entry this process started writing is on disk."""
    while _WRITERS:
        _WRITERS.pop().join()


def _write(built: CachedSplit, folder: Path, name: str) -> None:
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        np.save(tmp / "images.npy", built.images)
        np.save(tmp / "masks.npy", built.masks)
        content = built.content
        meta = {
            "file_names": built.file_names,
            "fingerprint": built.source,
            "content_sha256": content,
            "skipped": built.skipped,
            "skipped_annotations": built.skipped_annotations,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        index = _index_file(name)
        if index is not None and _trusted_writer(index):
            index.write_text(content + "\n")
    except OSError as exc:  # a full disk loses the cache entry, not the training
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"flowops: could not write the decoded cache to {folder}: {exc}", file=sys.stderr)
        return
    if folder.exists() and _trusted_writer(index):
        stale = folder.with_name(f".{folder.name}-replaced-{os.getpid()}")  # a trusted job replaces a bad entry
        try:
            folder.rename(stale)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process built it first: theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)


def _decode(split: Split, image: dict, size: int):
    path = split.images_dir / image["file_name"]
    try:
        raw = path.read_bytes()  # read once: hashed and decoded from memory
        with Image.open(io.BytesIO(raw)) as im:
            rgb = upright(im)  # EXIF orientation applied: annotations are drawn on the image as seen
            if (rgb.width, rgb.height) != (image["width"], image["height"]):
                return (
                    image["file_name"],
                    None,
                    None,
                    f"{image['file_name']}: image is {rgb.width}x{rgb.height}, annotations say "
                    f"{image['width']}x{image['height']}",
                )
            resized = resize_image(rgb, size)
    except (OSError, SyntaxError, ValueError) as exc:
        return image["file_name"], None, None, f"{image['file_name']}: {exc}"
    dropped: list[str] = []
    mask = class_mask(split.coco, image, split.class_of, size, dropped)
    return image["file_name"], (resized, mask, dropped), hashlib.sha256(raw).hexdigest(), None


def _build(split: Split, size: int) -> CachedSplit:
    # Decoding and resizing release the GIL in PIL: threads keep every core busy.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda im: _decode(split, im, size), split.images))
    kept = [(name, arrays, h) for name, arrays, h, err in results if err is None]
    skipped = [err for *_, err in results if err is not None]
    if len(skipped) > MAX_SKIPPED_FRACTION * len(results) or not kept:
        raise FlowopsError(
            f"{split.images_dir}: {len(skipped)} of {len(results)} images unreadable (limit "
            f"{MAX_SKIPPED_FRACTION:.0%}); first: {skipped[0]}"
        )
    from flowops.data.fingerprint import split_source

    images = np.stack([a[0] for _, a, _ in kept])
    masks = np.stack([a[1] for _, a, _ in kept])
    source, content = split_source(split.annotation_sha256, {n: h for n, _, h in kept}), content_sha256(images, masks)
    names = [n for n, _, _ in kept]
    dropped = [d for _, a, _ in kept for d in a[2]]
    return CachedSplit(images, masks, names, _fingerprint(source, content), skipped, False, source, content, dropped)
