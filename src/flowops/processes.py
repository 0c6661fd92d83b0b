"""Whether a process of this machine still runs (a lock's or a run's owner, a server's config)."""

from __future__ import annotations

import os


def running(pid: int) -> bool:
    """True unless no process has this pid (another user's process counts as running)."""
    try:
        os.kill(pid, 0)  # signal 0 only asks; a PermissionError means someone else's process runs
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no pid can be
        return False
    except PermissionError:
        pass
    return True
