"""One definition of "the same data": what a run records and what `flowops data coco` prints.

A split's source digest covers its annotation file and every image it uses, by content
(sha256 of the file's bytes: from the download manifest where there is one, else hashed while
decoding). The dataset fingerprint combines the splits. The decoded arrays are a different
thing (resize, EXIF, masks at a size): runs record those as `flowops.decoded_sha256`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"  # written by `flowops data coco`: "<images folder>/<file>" -> size, sha256


def split_source(annotation_sha256: str, files: dict[str, str]) -> str:
    """sha256 over the annotation file's hash and each used image's `name:sha256`, sorted by name."""
    digest = hashlib.sha256(annotation_sha256.encode())
    for name in sorted(files):
        digest.update(f"{name}:{files[name]}\n".encode())
    return digest.hexdigest()


def dataset_fingerprint(sources: dict[str, str]) -> str:
    """The fingerprint of a dataset from its splits' source digests ({"train": ..., "val": ...})."""
    return hashlib.sha256("".join(f"{k}:{sources[k]}\n" for k in sorted(sources)).encode()).hexdigest()


def manifest_hashes(images_dir: Path) -> dict[str, str]:
    """file name -> sha256 for the images the download manifest beside `images_dir` lists ({} without one)."""
    path = images_dir.parent / MANIFEST
    if not path.is_file():
        return {}
    try:
        listed = json.loads(path.read_text())
    except ValueError:
        return {}
    prefix = images_dir.name + "/"
    return {k[len(prefix) :]: v["sha256"] for k, v in listed.items() if k.startswith(prefix) and "sha256" in v}
