"""What tests need to run side by side in pytest-xdist workers without sharing by accident.

- `free_port()`: each worker takes ports from a block of its own, below the kernel's ephemeral
  range, so two workers (or a client socket the kernel numbers) never get the same port.
  Binding port 0 and closing it, as before, lets the kernel hand that number out again before
  the server binds it.
- `built_once(...)`: an expensive, read-only thing (a migrated SQLite store, a tiny trained run)
  built by the first worker that asks, under a file lock, and reused by the others.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

# Ports 20000-31999: below Linux's default ephemeral range (32768-60999, where bind(0) and
# outgoing connections draw from), 1,000 per worker, for up to 12 workers.
PORT_BASE, PORT_BLOCK = 20000, 1000


def worker_index() -> int:
    """0 for a plain pytest run or xdist's gw0, 1 for gw1, ..."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


_ports = itertools.count(PORT_BASE + PORT_BLOCK * worker_index())


def free_port() -> int:
    """A loopback port no other worker will be given, free when this returns."""
    limit = PORT_BASE + PORT_BLOCK * (worker_index() + 1)
    for port in _ports:
        if port >= limit:
            break
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # a server of an earlier test still holds it: take the next
                continue
            return port
    raise RuntimeError(f"worker {worker_index()} used up its {PORT_BLOCK} ports")


def shared_root(tmp_path_factory) -> Path:
    """A folder every worker of this run sees (the run's own base temp folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """shared_root/name, made by `build(folder)` once per test run: the first worker builds it,
    the others wait on the lock and reuse it. It is built in place (stores record absolute
    paths) and marked complete at the end: a build that failed half-way is started again."""
    root = shared_root(tmp_path_factory)
    folder, complete = root / name, root / f"{name}.complete"
    with FileLock(str(root / f"{name}.lock")):
        if not complete.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            complete.touch()
    return folder
