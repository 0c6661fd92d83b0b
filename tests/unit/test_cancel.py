"""A signal stops the work between steps, never inside one; what ended stays ended."""

import os
import signal
import threading
import time

import pytest

from flowops.cancel import Cancel, run_until_signalled


def _signal_when(started: threading.Event, signum: int = signal.SIGTERM) -> threading.Thread:
    """Signal this process once the work has begun, so run_until_signalled's handler is in place
    (a fixed delay signalled pytest itself when the machine was slow to start the work)."""

    def send() -> None:
        assert started.wait(60), "the work never started"
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _settled(steps: list, quiet: float = 0.05, deadline: float = 10) -> int:
    """The step count once it has not changed for `quiet` seconds (at most `deadline`)."""
    end = time.monotonic() + deadline
    count = -1
    while count != len(steps) and time.monotonic() < end:
        count = len(steps)
        time.sleep(quiet)
    return count


def test_a_signal_stops_the_work_at_its_next_check_and_runs_cleanup_once():
    steps, cleaned, started = [], [], threading.Event()

    def work(cancel: Cancel) -> str:
        for i in range(2000):
            cancel.check()
            steps.append(i)
            started.set()
            time.sleep(0.005)
        return "done"

    before = signal.getsignal(signal.SIGTERM)
    sender = _signal_when(started)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        run_until_signalled(work, cleaned.append)
    sender.join()
    assert cleaned == [signal.SIGTERM]
    assert 0 < len(steps) < 2000
    count = _settled(steps)
    time.sleep(0.05)
    assert len(steps) == count, "the work went on after it was cancelled"
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_cancels_too():
    cleaned, started = [], threading.Event()

    def work(cancel: Cancel) -> None:
        while True:
            cancel.check()
            started.set()
            time.sleep(0.005)

    sender = _signal_when(started, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="signal 2"):
        run_until_signalled(work, cleaned.append)
    sender.join()
    assert cleaned == [signal.SIGINT]


def test_a_signal_after_the_last_step_changes_nothing():
    cleaned, ended = [], threading.Event()

    def work(cancel: Cancel) -> str:
        with cancel.last_step():
            pass
        ended.set()
        time.sleep(0.3)  # the signal comes now: the work has ended, its result stands
        return "finished"

    sender = threading.Thread(target=lambda: (ended.wait(), os.kill(os.getpid(), signal.SIGTERM)))
    sender.start()
    assert run_until_signalled(work, cleaned.append) == "finished"
    sender.join()
    assert cleaned == []


def test_the_works_own_error_reaches_the_caller_unchanged():
    def work(cancel: Cancel) -> None:
        raise ValueError("bad bundle")

    with pytest.raises(ValueError, match="bad bundle"):
        run_until_signalled(work, lambda signum: None)


def test_a_write_under_the_lock_is_never_cut_by_cleanup():
    order = []
    inside = threading.Event()

    def work(cancel: Cancel) -> None:
        with cancel.lock:
            inside.set()
            order.append("write begins")
            time.sleep(0.2)
            order.append("write ends")
        while True:
            cancel.check()
            time.sleep(0.005)

    sender = threading.Thread(target=lambda: (inside.wait(), os.kill(os.getpid(), signal.SIGTERM)))
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        run_until_signalled(work, lambda signum: order.append("cleanup"))
    sender.join()
    assert order == ["write begins", "write ends", "cleanup"]


def test_once_stopping_a_signal_is_only_recorded():
    """The entry point's failure path calls cancel.stopping(): a signal after it (the parent stopping
    a chief mid-cleanup) is recorded but raises nothing, so the run is still ended; before it, the
    first signal raises (the negative case)."""
    from flowops import cancel

    previous = {s: signal.getsignal(s) for s in cancel.SIGNALS}
    try:
        handler = cancel.InterruptOnce().install()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs on the main thread between bytecodes: well within this
        handler = cancel.InterruptOnce().install()
        cancel.stopping()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        cancel.safe_point()  # a check after stopping raises nothing either
        assert handler.received == [signal.SIGTERM, signal.SIGINT] and cancel.requested()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        cancel._installed = None
