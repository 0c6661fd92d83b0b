"""Cancellation that never lands inside a library call.

A CI job is cancelled with SIGINT, then SIGTERM, then SIGKILL seconds later. Raising from a
signal handler puts the exception wherever the main thread happens to be: inside SQLAlchemy
(a half-closed session then holds SQLite's lock, so ending the run FAILED fails with "database
is locked"), or inside a `__del__`, where Python prints and drops it and the work goes on.

`run_until_signalled` runs the work in a thread instead. The main thread only waits; on a signal
it takes the `Cancel` lock, so the work is never between two of its guarded writes, marks the
token cancelled, runs `cleanup` (end the run FAILED) and raises KeyboardInterrupt, which the CLI
turns into "interrupted" and exit 130. The work checks the token between steps, and holds the
lock around writes that must not interleave with cleanup: creating the run, and its last step
(`cancel.last_step()`), after which a signal no longer undoes anything and the work's result stands.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Cancel:
    """Shared by the work and the waiting main thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.signum: int | None = None
        self.finished = False

    @property
    def cancelled(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Stop the work here if a signal came."""
        if self.signum is not None:
            raise KeyboardInterrupt(f"signal {self.signum}")

    @contextmanager
    def last_step(self) -> Iterator[None]:
        """The write that ends the work (or ends it FAILED): not cancelled half-way, not undone after."""
        with self.lock:
            self.check()
            yield
            self.finished = True


def run_until_signalled(work: Callable[[Cancel], T], cleanup: Callable[[int], None]) -> T:
    """`work(cancel)` in a thread; on SIGINT or SIGTERM, `cleanup(signum)` then KeyboardInterrupt."""
    cancel = Cancel()
    outcome: list[tuple[bool, object]] = []
    received: list[int] = []

    def body() -> None:
        try:
            outcome.append((True, work(cancel)))
        except BaseException as exc:  # handed to the main thread
            outcome.append((False, exc))

    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in SIGNALS}
    try:
        thread = threading.Thread(target=body, name="flowops-work", daemon=True)
        thread.start()
        while thread.is_alive() and not received:
            thread.join(0.1)
        if received and not outcome:
            with cancel.lock:
                if not cancel.finished:  # the work had not ended: it must not end now
                    cancel.signum = received[0]
                    cleanup(received[0])
                    raise KeyboardInterrupt(f"signal {received[0]}")
            thread.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


class InterruptOnce:
    """A SIGINT/SIGTERM handler for a process whose main thread does the work: the first signal
    raises KeyboardInterrupt wherever that thread is, or, inside `deferred()`, at the next
    `safe_point()` (training: between two steps; raised inside TensorFlow's call of a step, it
    left a multi-worker chief blocked in that step until killed). Later signals are only recorded,
    so the cleanup the first one starts is not itself interrupted (a cancelled GitHub job sends
    SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.raised = False
        self.deferring = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if not self.deferring:
            self.check()

    def check(self) -> None:
        """Raise KeyboardInterrupt for the first signal, once."""
        if self.received and not self.raised:
            self.raised = True
            raise KeyboardInterrupt(f"signal {self.received[0]}")

    def install(self) -> InterruptOnce:
        global _installed
        for signum in SIGNALS:
            signal.signal(signum, self)
        _installed = self
        return self


_installed: InterruptOnce | None = None


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, the installed InterruptOnce's first signal waits for `safe_point()` or the block's end."""
    handler = _installed
    if handler is None:
        yield
        return
    handler.deferring += 1
    try:
        yield
    finally:
        handler.deferring -= 1
    handler.check()


def stopping() -> None:
    """The work is ending (it failed, or a signal came): from here a signal is only recorded, so it
    cannot cut short the cleanup that ends the run (a multi-worker chief whose peer died was stopped
    by its parent mid-cleanup: it died before ending its run, and MLflow's exit ended it FINISHED)."""
    if _installed is not None:
        _installed.raised = True


def requested() -> bool:
    """Has the installed InterruptOnce received a signal (raised or still deferred)?"""
    return _installed is not None and bool(_installed.received)


def safe_point() -> None:
    """Here the work may stop: raise the deferred signal's KeyboardInterrupt, if one came."""
    if _installed is not None:
        _installed.check()


def reclaim_signals() -> None:
    """Give SIGINT and SIGTERM back to what Python last set for them. A library's own C handler
    (TensorFlow's coordination service, across workers, installs one for SIGTERM to note a
    preemption) replaces Python's without Python knowing: the signal was swallowed and training
    went on until killed."""
    for signum in SIGNALS:
        signal.signal(signum, signal.getsignal(signum))
