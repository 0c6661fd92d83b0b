"""Shared fixtures for every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text|bytes) -> Path of a file under a temp dir."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return _write


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny synthetic COCO-format dataset shared by the session (integration and workflows)."""
    from flowops.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, images=30, width=64, height=48, seed=11)
    return root
