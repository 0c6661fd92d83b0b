"""CLI conventions: help on every command and option, --version."""

import click
from click.testing import CliRunner

from flowops.cli import cli


def walk(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*prefix, name))


def test_every_command_and_option_has_help():
    missing = []
    for path, command in [((), cli), *walk(cli)]:
        if not (command.help or "").strip():
            missing.append(" ".join(path) or "flowops")
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip() and param.name not in ("version",):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []
    assert len(list(walk(cli))) >= 2


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("flowops 0.")
