"""Workflows tier: the real workflow files, checked statically and executed by nektos/act."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PINNED_LIST = REPO / ".github" / "pinned-actions.md"  # in the repository: a missing list fails, never passes


def pinned_actions(path: Path = PINNED_LIST) -> dict[str, str]:
    """action -> commit SHA from the table in .github/pinned-actions.md."""
    found = dict(re.findall(r"\| (\S+/\S+) \| v[\d.]+ \| ([0-9a-f]{40}) \|", path.read_text()))
    assert found, f"{path}: no pinned actions listed"
    return found


PINNED = pinned_actions()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/workflows" in str(item.fspath):
            item.add_marker(pytest.mark.workflows)


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True; keep the workflow's own spelling.
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data
