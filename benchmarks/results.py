"""Write a benchmark's results into its section of docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (two machines with "2 cores" can differ threefold)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def record(title: str, lines: list[str], how: str) -> None:
    """Replace (or add) the section `title` of docs/BENCHMARKS.md."""
    path = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nMeasured on the machine named in each section; rerun with the command given.\n"
    )
    machine = f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}"
    section = (
        f"## {title}\n\nMachine: {machine}. Command: {how}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    parts = text.split(f"## {title}\n")
    if len(parts) == 2:
        rest = parts[1].split("\n## ", 1)
        text = parts[0] + section + ("\n## " + rest[1] if len(rest) == 2 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
