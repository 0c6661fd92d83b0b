"""The one error path for users.

Expected failures raise `FlowopsError` (or a subclass); the CLI prints its message as one
line to stderr and exits 1. Anything else is a bug and is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass


class FlowopsError(Exception):
    """An expected failure with a message meant for the user (one line)."""


@dataclass(frozen=True)
class Problem:
    """One located finding in one file: `path:line: where: message`."""

    path: str
    message: str
    line: int | None = None
    where: str = ""

    def __str__(self) -> str:
        head = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{head}: {self.where}: {self.message}" if self.where else f"{head}: {self.message}"


class ProblemsError(FlowopsError):
    """Several located problems, printed one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
