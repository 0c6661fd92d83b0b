"""One cache entry on disk: a split decoded at one size, written as it is decoded.

    <entry>/images.bin   uint8 rows of size x size x 3, in file-name order of the kept images
    <entry>/masks.bin    uint8 rows of size x size (class indices; 255: ignore)
    <entry>/meta.json    count, size, file names, source digest, content sha256, skipped ...

A build keeps a bounded window of images decoding (threads, as PIL releases the GIL; or, for
large splits, processes, which also spread the mask drawing and Python glue) and appends each
row, in order, as soon as it is decoded, so memory stays flat whatever the split's size and the
rows can be read while the rest decode. Every chunk of images it syncs the rows and records its
progress, so a build killed half-way resumes where it stopped: the partial folder keeps the
rows written and the progress journal (a line per chunk, appended) says how many count. An
exclusive lock (released by the kernel when a process dies) keeps two processes from building
the same entry at once; the finished folder is renamed into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 64  # images decoded between two progress records (and two syncs)
WINDOW_PER_WORKER = 4  # jobs in flight per worker: the build's memory bound
TELL_EVERY = 16  # rows written between two calls of on_rows
READ = 1 << 22


def shapes(count: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (count, size, size, 3), (count, size, size)


def content_digest(images: Path, masks: Path, count: int, size: int) -> str:
    """sha256 of the arrays as `cache.content_sha256` hashes them, read from the files in blocks."""
    digest = hashlib.sha256()
    for path, shape in zip((images, masks), shapes(count, size), strict=True):
        digest.update(f"{np.dtype(np.uint8).str}{shape}".encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(READ), b""):
                digest.update(block)
    return digest.hexdigest()


def open_arrays(folder: Path, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only memory maps of the entry (a slice reads only its rows)."""
    image_shape, mask_shape = shapes(count, size)
    if count == 0:
        return np.zeros(image_shape, np.uint8), np.zeros(mask_shape, np.uint8)
    return (
        np.memmap(folder / "images.bin", dtype=np.uint8, mode="r", shape=image_shape),
        np.memmap(folder / "masks.bin", dtype=np.uint8, mode="r", shape=mask_shape),
    )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the duration; the kernel drops it if we die."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build(
    partial: Path,
    items: list[dict],
    size: int,
    prepare: Callable[[dict], Any],
    decode: Callable[[Any], tuple],
    workers: int | None = None,
    processes: bool = False,
    on_rows: Callable[[int, bool], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Decode `items` into `partial` (resuming what a killed build left there); the progress record.

    `prepare(item)` makes the job one worker gets (in this process, as it is submitted); `decode(job)`
    returns (file name, (image, mask, dropped annotations) or None, sha256 or None, error or None),
    as `cache._decode` does. With `processes`, decode and its jobs must pickle.

    The workers never wait for the writes: a bounded window of jobs is in flight while the rows
    are written in order, each as soon as it is decoded; every CHUNK images the rows are synced
    and a progress line appended. `on_rows(n, last)` is told each time the first n rows are
    readable from the files (a training can read them before the entry is complete), with `last`
    once no more will come; `stop` ends the build early (resumable, like a kill).
    """
    partial.mkdir(parents=True, exist_ok=True)
    journal = partial / "progress.jsonl"  # one line per finished chunk: appended, never rewritten
    progress: dict[str, Any] = {"done": 0, "kept": [], "hashes": {}, "skipped": [], "dropped": []}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                chunk = json.loads(line)
            except ValueError:
                break  # the line a kill cut short: its rows are cut off below
            _add(progress, chunk)
    rows = len(progress["kept"])
    image_bytes, mask_bytes = size * size * 3, size * size
    # Rows written after the last progress line (a kill mid-chunk) are cut off again.
    for name, row_bytes in (("images.bin", image_bytes), ("masks.bin", mask_bytes)):
        with (partial / name).open("ab") as fh:
            fh.truncate(rows * row_bytes)
    told = rows
    if on_rows is not None:
        on_rows(rows, progress["done"] == len(items))
    count = workers or os.cpu_count() or 2
    with (
        _pool(count, processes) as pool,
        journal.open("a") as log,
        (partial / "images.bin").open("ab", buffering=0) as images,
        (partial / "masks.bin").open("ab", buffering=0) as masks,
    ):
        in_flight: deque[Future] = deque()
        submitted = progress["done"]
        chunk = _chunk(progress["done"])
        while progress["done"] < len(items):
            if stop is not None and stop.is_set():  # rows after the last progress line are cut off on resume
                for future in in_flight:
                    future.cancel()
                raise Stopped(f"{partial}: stopped after {chunk['done']} of {len(items)} images")
            while submitted < len(items) and len(in_flight) < WINDOW_PER_WORKER * count:
                in_flight.append(pool.submit(decode, prepare(items[submitted])))
                submitted += 1
            name, arrays, sha, error = in_flight.popleft().result()
            chunk["done"] += 1
            if error is not None:
                chunk["skipped"].append(error)
            else:
                image, mask, dropped = arrays
                _write(images, np.ascontiguousarray(image, dtype=np.uint8))  # unbuffered: readable now
                _write(masks, np.ascontiguousarray(mask, dtype=np.uint8))
                chunk["kept"].append(name)
                chunk["hashes"][name] = sha
                chunk["dropped"] += dropped
                rows += 1
            last = chunk["done"] == len(items)
            if on_rows is not None and (rows - told >= TELL_EVERY or last):
                on_rows(told := rows, last)  # (told every few rows: each wakes the reader, who takes the GIL)
            if chunk["done"] - progress["done"] == CHUNK or last:
                for out in (images, masks):
                    os.fsync(out.fileno())
                log.write(json.dumps(chunk) + "\n")  # the rows are on disk before the line that counts them
                log.flush()
                os.fsync(log.fileno())
                _add(progress, chunk)
                chunk = _chunk(progress["done"])
    return progress


def _write(out: Any, row: np.ndarray) -> None:
    """All of the row's bytes (an unbuffered write may take part of them)."""
    view = memoryview(row.data).cast("B")
    while view:
        view = view[out.write(view) :]


class Stopped(Exception):
    """A build ended early on request; its partial folder resumes later."""


def _chunk(done: int) -> dict[str, Any]:
    return {"done": done, "kept": [], "hashes": {}, "skipped": [], "dropped": []}


def _add(progress: dict[str, Any], chunk: dict[str, Any]) -> None:
    progress["done"] = chunk["done"]
    progress["kept"] += chunk["kept"]
    progress["hashes"].update(chunk["hashes"])
    progress["skipped"] += chunk["skipped"]
    progress["dropped"] += chunk["dropped"]


def _pool(workers: int, processes: bool) -> Executor:
    if not processes:
        return ThreadPoolExecutor(max_workers=workers)
    # forkserver: workers start from a clean interpreter, not a fork of one that may run TensorFlow's threads
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


def finish(partial: Path, folder: Path, meta: dict[str, Any], replace: bool) -> None:
    """Write meta.json and rename the partial folder into place (over a bad entry when `replace`)."""
    (partial / "progress.jsonl").unlink(missing_ok=True)
    (partial / "meta.json").write_text(json.dumps(meta))
    if folder.exists() and replace:
        stale = folder.with_name(f".{folder.name}-replaced-{os.getpid()}")
        folder.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        partial.rename(folder)
    except OSError:  # another process finished it first: theirs is as good as ours
        shutil.rmtree(partial, ignore_errors=True)
