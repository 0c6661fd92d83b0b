"""The Python packages an MLflow Project's own environment names, as pip requirement lines.

The generated train job installs a project's environment and nothing else (no TensorFlow for an
ElasticNet): `requirements.txt`, else the `dependencies` of `python_env.yaml`, else the `pip:`
list of `conda.yaml`. Conda packages outside that list are not pip's to install: they are said.
A project with `docker_env` runs in its image: nothing to install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Requirements:
    source: str  # the file the lines come from, or "" when none
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def requirements(project: Path) -> Requirements:
    """The project's pip requirement lines (`-r` lines read in place), from the first file it has."""
    if (project / "requirements.txt").is_file():
        return Requirements("requirements.txt", _requirement_file(project / "requirements.txt"))
    data = _yaml(project / "python_env.yaml")
    if isinstance(data, dict):
        lines: list[str] = []
        for entry in data.get("dependencies") or []:
            text = str(entry).strip()
            if text.startswith("-r"):
                lines += _requirement_file(project / text[2:].strip())
            elif text:
                lines.append(text)
        return Requirements("python_env.yaml", lines)
    data = _yaml(project / "conda.yaml")
    if isinstance(data, dict):
        found = Requirements("conda.yaml")
        for entry in data.get("dependencies") or []:
            if isinstance(entry, dict):
                found.lines += [str(e) for e in entry.get("pip") or []]
            elif str(entry).split("=")[0] not in ("python", "pip"):
                found.notes.append(str(entry))
        if found.notes:
            found.notes = [
                f"conda.yaml: conda packages pip does not install: {', '.join(found.notes)} (list them under pip:, "
                "or train with --env-manager conda)"
            ]
        return found
    return Requirements("")


def _requirement_file(path: Path) -> list[str]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        text = line.split(" #")[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-r"):
            out += _requirement_file(path.parent / text[2:].strip())
        elif not text.startswith("-"):
            out.append(text)
    return out


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
