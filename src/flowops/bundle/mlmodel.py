"""The model inside a run bundle: its MLmodel and environment files are claims of the PR stage (#32.18).

Serving and `mlflow models serve` act on them: the `loader_module` a pyfunc imports, the `code`
folder put on sys.path, the files each flavor opens, and the requirements a model environment
installs. A bundle is refused unless they are what MLflow's flavors write when training logs a
model: a loader from MLflow itself, paths that stay inside the model and name files it carries,
and requirements that are package names with versions (no pip options: no `--index-url`, `-e`,
`--find-links`; no URLs: no `git+https://`, no file references).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from flowops.bundle.check import BundleRefused

PATH_KEYS = ("code", "data", "model_path", "pickled_model", "python_model", "saved_model_dir", "model_data", "path")
ENV_KEYS = ("conda", "virtualenv")
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|^file:|@\s*\S+:")


def check_model(folder: Path, files: set[str]) -> None:
    """BundleRefused naming the first field of model/MLmodel or its environment that training does not write."""
    where = folder / "model" / "MLmodel"
    if "model/MLmodel" not in files:
        return
    try:
        data = yaml.safe_load(where.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleRefused(f"{where}: not a readable MLmodel ({str(exc).splitlines()[0]})") from None
    flavors = data.get("flavors") if isinstance(data, dict) else None
    if not isinstance(flavors, dict) or not flavors:
        raise BundleRefused(f"{where}: flavors: missing; not a model MLflow logged")
    for name, flavor in flavors.items():
        if not isinstance(flavor, dict):
            raise BundleRefused(f"{where}: flavors.{name}: not a mapping")
        loader = flavor.get("loader_module")
        if loader is not None and not (isinstance(loader, str) and re.fullmatch(r"mlflow(\.\w+)+", loader)):
            raise BundleRefused(
                f"{where}: flavors.{name}.loader_module: {loader!r} is not one of MLflow's flavors (mlflow.*): "
                "serving would import it"
            )
        for key, value in _paths(flavor):
            _inside(where, f"flavors.{name}.{key}", value, files)
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        if f"model/{name}" in files:
            _requirements(folder / "model" / name)


def _paths(flavor: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) of every file reference in a flavor: its own keys, its env files, its artifacts."""
    found = [(key, flavor[key]) for key in PATH_KEYS if key in flavor and flavor[key] is not None]
    env = flavor.get("env")
    if isinstance(env, dict):
        found += [(f"env.{k}", env[k]) for k in ENV_KEYS if env.get(k) is not None]
    elif env is not None:
        found.append(("env", env))
    artifacts = flavor.get("artifacts")
    if isinstance(artifacts, dict):
        for name, entry in artifacts.items():
            path = entry.get("path") if isinstance(entry, dict) else entry
            found.append((f"artifacts.{name}.path", path))
    return found


def _inside(where: Path, field: str, value: Any, files: set[str]) -> None:
    """A relative path that stays inside model/ and names a file (or a folder of files) the bundle has."""
    text = value if isinstance(value, str) else ""
    parts = PurePosixPath(text).parts
    if not parts or text.startswith("/") or "\\" in text or ".." in parts or ":" in parts[0]:
        raise BundleRefused(f"{where}: {field}: {value!r} must be a path inside the model folder")
    name = "model/" + "/".join(p for p in parts if p != ".")
    if name not in files and not any(f.startswith(name + "/") for f in files):
        raise BundleRefused(f"{where}: {field}: {value!r} names no file the bundle carries")


def _requirements(path: Path) -> None:
    """Each requirement a package name with a version: no pip option, no URL, no file reference."""
    text = path.read_text(errors="replace")
    lines: list[str] = []
    if path.suffix == ".txt":
        lines = text.splitlines()
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BundleRefused(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
        for entry in (data.get("dependencies") or []) if isinstance(data, dict) else []:
            if isinstance(entry, dict):
                lines += [str(e) for e in entry.get("pip") or []]
            else:
                lines.append(str(entry))
        if isinstance(data, dict) and path.name == "python_env.yaml":
            lines += [str(e) for e in data.get("build_dependencies") or []]
    for number, line in enumerate(lines, 1):
        requirement = line.split(" #")[0].strip()
        if not requirement or requirement.startswith("#"):
            continue
        if path.name == "python_env.yaml" and requirement == "-r requirements.txt":
            continue  # what MLflow writes: the model's own requirements.txt, checked on its own
        if requirement.startswith("-") or URL.search(requirement):
            raise BundleRefused(
                f"{path}: {requirement[:120]!r} (entry {number}): a model's requirements are package names and "
                "versions; options and URLs would install from elsewhere than the configured index"
            )
