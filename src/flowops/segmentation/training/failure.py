"""Why a training stopped, in one line (the entry point, its workers and the run's failure tag say it)."""

from __future__ import annotations

from flowops.errors import FlowopsError


def describe(exc: BaseException) -> str:
    """One line saying why training stopped."""
    if isinstance(exc, FlowopsError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted" + (f" ({exc})" if str(exc) else "")
    name = type(exc).__name__
    if name == "ResourceExhaustedError" or isinstance(exc, MemoryError):
        return "out of memory: lower batch_size or image_size"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    marker = "/mlflow-artifacts/artifacts/"
    if marker in first:  # the server could not write to its artifact store (SFTP down, disk full, ...)
        path = first.split(marker, 1)[1].split()[0].split("/artifacts/", 1)[-1]
        return f"could not store artifact {path} on the tracking server (its artifact store failed or is down)"
    return f"{name}: {first}"[:500]
