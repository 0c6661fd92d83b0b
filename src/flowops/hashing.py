"""sha256 of a file, read in blocks (downloads, run bundles), and of a model's files (its digest)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MODEL_DIGEST_TAG = "flowops.model_digest"  # on an imported run and its versions: model_digest() of its files
NOT_MODEL_FILES = {"registered_model_meta"}  # MLflow adds it to a registered model's download


def model_digest(model_dir: Path) -> str:
    """sha256 over every file of a model folder (each relative path and its sha256), in path order."""
    outer = hashlib.sha256()
    for root, dirs, names in os.walk(model_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            rel = path.relative_to(model_dir).as_posix()
            if rel not in NOT_MODEL_FILES:
                outer.update(f"{rel}\0{sha256_file(path)}\n".encode())
    return outer.hexdigest()
