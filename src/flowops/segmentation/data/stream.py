"""A split's cache entry read while it is being built: the first epoch trains as images are decoded.

`start(split, categories, size)` builds (or verifies) the entry in a background thread and
returns at once; `Building.wait_rows(n)` blocks until more than n rows are readable from the
entry's files (or no more will come), so a training's first epoch reads each batch as soon as
its rows are decoded instead of waiting for the whole split. On a GPU runner decoding then
overlaps the GPU's work; on any runner the first step comes seconds after the start.

The first epoch's order must not depend on when rows arrive, or a warm cache and a cold one
would train differently: `window_shuffled` draws from a window of the next rows in a seeded
order that depends only on the seed and the row count, and a warm entry is read the same way.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flowops.segmentation.data.cache import CachedSplit, load_split
from flowops.segmentation.data.coco import Split

WINDOW = 256  # rows the first epoch shuffles among (tf.data's shuffle buffer, in rows)


class Building:
    """One split's entry, built or verified in the background; its rows readable as they are written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._changed = threading.Condition()
        self._rows = 0
        self._final = False  # built, verified, failed or stopped
        self._all_rows = False  # every row is written (the first epoch may end before the entry is checked)
        self._result: CachedSplit | None = None
        self._error: BaseException | None = None
        self._folder: Path | None = None
        self._fds: tuple[int, int] | None = None
        self.stop = threading.Event()

    def watch(self, folder: Path, rows: int, last: bool = False) -> None:
        """Told by the build: the first `rows` rows of `folder`'s files are readable (`last`: all of them;
        the entry is still being checked and put in place, and may yet fail)."""
        with self._changed:
            if self._folder != folder:  # opened here, on the build's thread, before it renames the folder
                self._open(folder)
            self._rows, self._all_rows = rows, last
            self._changed.notify_all()

    def finish(self, result: CachedSplit | None, error: BaseException | None = None) -> None:
        with self._changed:
            try:
                if result is not None:
                    self._rows = len(result.file_names)
                    if self._fds is None:  # a verified hit: its files are the entry's
                        self._open(Path(str(getattr(result.images, "filename", ""))).parent)
            except OSError as exc:
                result, error = None, exc
            self._result, self._error, self._final = result, error, True
            self._changed.notify_all()

    def wait_rows(self, have: int, timeout: float | None = None) -> int | None:
        """The number of readable rows once it exceeds `have`, or once no more will come (then the
        final count; the build's error if it failed); None if `timeout` seconds pass first."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._rows > have or self._final or self._all_rows, timeout):
                return None
            if self._rows <= have and self._error is not None:
                raise self._error
            return self._rows

    @property
    def rows(self) -> int:
        """Rows readable now."""
        with self._changed:
            return self._rows

    @property
    def complete(self) -> bool:
        """Built (or verified) whole."""
        with self._changed:
            return self._result is not None

    def failure(self) -> BaseException | None:
        """The build's error, if it has failed by now (never waits)."""
        with self._changed:
            return self._error

    def result(self) -> CachedSplit:
        """The complete entry (waits for the build; raises its error)."""
        with self._changed:
            self._changed.wait_for(lambda: self._final)
            if self._error is not None:
                raise self._error
            assert self._result is not None
            return self._result

    def files(self) -> tuple[int, int]:
        """Open descriptors of the rows (images, masks): still valid after the entry is renamed into place."""
        with self._changed:
            self._changed.wait_for(lambda: self._fds is not None or self._final)
            if self._fds is None:
                raise self._error or OSError(f"the cache entry of {self.name} has no files")
            return self._fds

    def close(self) -> None:
        """Stop a build still running (it resumes next time). The descriptors stay open while a
        dataset may still read them (closed with this object: a number reused under a reader
        would read another file)."""
        self.stop.set()

    def _open(self, folder: Path) -> None:
        fds = (os.open(folder / "images.bin", os.O_RDONLY), os.open(folder / "masks.bin", os.O_RDONLY))
        self._fds, self._folder = fds, folder  # (a folder given up for another stays open for its readers)
        weakref.finalize(self, _close, fds)


def _close(fds: tuple[int, int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def start(split: Split, categories: list[str], size: int) -> Building:
    """The split's entry, verified or built in a background thread (flowops.segmentation.data.cache.load_split)."""
    building = Building(split.name)

    def run() -> None:
        try:
            result = load_split(split, categories, size, building.watch, building.stop)
        except BaseException as exc:  # handed to whoever waits on the rows
            building.finish(None, exc)
        else:
            building.finish(result)

    threading.Thread(target=run, name=f"flowops-cache-{split.name}", daemon=True).start()
    return building


def finished(cached: CachedSplit) -> Building:
    """A Building of an entry already complete (read the same way, so it trains the same way)."""
    building = Building("")
    building.finish(cached)
    return building


def window_shuffled(
    wait_rows, batch_size: int, seed: int, *, shuffle: bool = True, window: int = WINDOW, drop_remainder: bool = False
) -> Iterator[np.ndarray]:
    """Batches of row indices (int64) covering every row once, as rows become readable.

    `wait_rows(have)` returns the readable row count once it exceeds `have`, or the final count.
    With `shuffle`, each index is drawn at random (seeded) from a window of the next `window`
    readable rows, as tf.data's shuffle buffer draws: the order depends on the seed and the row
    count only, never on when rows arrived. Without it, rows in order.
    """
    rng = np.random.default_rng(seed)
    pool: list[int] = []  # without shuffle it holds one row at most
    batch: list[int] = []
    readable, final, taken = 0, False, 0
    while True:
        if taken == readable and not final:
            now = wait_rows(readable)
            final, readable = now == readable, now
        if taken < readable:
            pool.append(taken)
            taken += 1
            if shuffle and len(pool) < window:
                continue
        elif not pool:
            break
        if shuffle:  # the drawn row moves to the end, where pop takes it
            pick = int(rng.integers(len(pool)))
            pool[pick], pool[-1] = pool[-1], pool[pick]
        batch.append(pool.pop())
        if len(batch) == batch_size:
            yield np.array(batch, np.int64)
            batch.clear()
    if batch and not drop_remainder:
        yield np.array(batch, np.int64)
