"""Waiting for a service (the tracking server, `flowops serve`) to answer GET /health."""

from __future__ import annotations

import subprocess
import time


def wait_healthy(url: str, timeout: float, process: subprocess.Popen | None = None) -> bool:
    """Poll `url`/health until it answers 200 (True); False once `timeout` seconds pass or `process` exits."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if requests.get(f"{url.rstrip('/')}/health", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False
