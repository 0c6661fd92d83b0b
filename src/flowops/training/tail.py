"""The last words of a training: what the MLproject's command wrote last on stderr, kept while it
still reaches the terminal, so a failed run is tagged with why (`flowops.failure`) even when the
project's code knows nothing of flowops (a traceback's last line: the exception and its message)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator

MLFLOW_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) mlflow")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
KEEP = 64 * 1024  # bytes of the end of stderr kept


class Tail:
    """The end of what went to stderr."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > KEEP and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft())

    def last_line(self) -> str:
        """The last non-empty line that is not MLflow's own log, one line of at most 500 characters."""
        text = ANSI.sub("", b"".join(self.chunks).decode("utf-8", "replace"))
        for line in reversed(text.splitlines()):
            line = "".join(c if c.isprintable() else " " for c in line).strip()
            if line and not MLFLOW_LINE.match(line):
                return line[:500]
        return ""


@contextlib.contextmanager
def stderr_tail() -> Iterator[Tail]:
    """File descriptor 2 through a pipe for the block: everything still reaches the real stderr, and
    its end is kept (children inherit the pipe). Where fd 2 cannot be replaced, nothing is kept."""
    tail = Tail()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        yield tail
        return

    def copy() -> None:
        while True:
            try:
                data = os.read(read_end, 65536)
            except OSError:
                return
            if not data:
                return
            tail.add(data)
            with contextlib.suppress(OSError):
                os.write(saved, data)

    reader = threading.Thread(target=copy, name="flowops-stderr-tail", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield tail
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the last write end held here closes: the reader sees the end
        reader.join(timeout=5)  # a background process of the project may keep the pipe open
        if not reader.is_alive():
            os.close(read_end)
        os.close(saved)
