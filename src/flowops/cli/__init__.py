"""The `flowops` command line: one module per command group (`flowops.cli.main` assembles them)."""

from flowops.cli.main import cli, main

__all__ = ["cli", "main"]
