"""`flowops data coco`: fetch exactly the COCO 2017 images an experiment needs, resumable and verified.

A mirror has the COCO host's layout: URL/annotations/annotations_trainval2017.zip,
URL/train2017/<file_name>, URL/val2017/<file_name>. Every file is written to `<name>.part`
and renamed only when complete and verified, so a partial file never looks complete; a
`.part` left by an interrupted run is resumed with an HTTP Range request, and one that is
already whole (the server answers 416 and its `Content-Range: bytes */N` is the .part's length)
is verified and kept; a longer one starts over. A file counts as present only when its sha256
is the one recorded when it was verified.

Each verified file is recorded at once in `manifest.journal` (one JSON line, flushed to disk),
folded into `manifest.json` when the run ends: a killed download loses only the files in flight.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowops.errors import FlowopsError
from flowops.hashing import sha256_file
from flowops.segmentation.catalog import COCO_CATEGORIES
from flowops.suggest import did_you_mean

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_MIRROR = "http://images.cocodataset.org"
ARCHIVE = "annotations/annotations_trainval2017.zip"
SPLITS = ("train2017", "val2017")
RETRIES = 3
CHUNK = 1 << 16


@dataclass
class Outcome:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file -> reason
    bytes: int = 0
    fingerprint: str = ""


def check_categories(names: list[str]) -> list[str]:
    known = set(COCO_CATEGORIES.values())
    for name in names:
        if name not in known:
            raise FlowopsError(f"--categories: {name!r} is not a COCO category{did_you_mean(name, known)}")
    if not names:
        raise FlowopsError("--categories: name at least one COCO category")
    return names


def fetch(url: str, dest: Path, timeout: float = 30, on_bytes=lambda n: None) -> int:
    """Download url to dest via dest.part, resuming a partial file; returns bytes transferred now."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after the bytes we have: whole, if it is the file's length
            total = range_total(exc.headers.get("Content-Range"))
            if total == have:
                return 0  # the caller verifies it
            part.unlink(missing_ok=True)  # longer than the file (or a length not said): start over
            size = "of unknown length" if total is None else f"{total} bytes"
            raise OSError(f"{part.name}: {have} bytes, but the file is {size}; fetching it again") from None
        raise
    with response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        expected = response.headers.get("Content-Length")
        total = have + int(expected) if expected is not None else None
        transferred = 0
        with part.open("ab" if have else "wb") as fh:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                transferred += len(chunk)
                on_bytes(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")
    return transferred


def range_total(header: str | None) -> int | None:
    """N of a 416's `Content-Range: bytes */N` (the file's length), or None when not said."""
    if not header or not header.startswith("bytes */"):
        return None
    total = header.removeprefix("bytes */").strip()
    return int(total) if total.isdigit() else None


def with_retries(action, attempts: int = RETRIES, backoff: float = 0.5):
    for attempt in range(attempts):
        try:
            return action()
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 401, 403, 404, 410) or attempt == attempts - 1:
                raise
        except (OSError, urllib.error.URLError, http.client.HTTPException):  # IncompleteRead: dropped mid-file
            if attempt == attempts - 1:
                raise
        time.sleep(backoff * 2**attempt)


def fetch_annotations(mirror: str, dest: Path, splits: list[str]) -> dict[str, Path]:
    """The instances_<split>.json files, from a cached, verified archive."""
    cache = dest / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / Path(ARCHIVE).name
    if not archive.exists():
        try:
            with_retries(lambda: fetch(f"{mirror}/{ARCHIVE}", archive, timeout=60))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise FlowopsError(
                f"mirror {mirror}: cannot download {ARCHIVE}: {getattr(exc, 'reason', None) or exc}"
            ) from None
        part = archive.with_name(archive.name + ".part")
        try:
            with zipfile.ZipFile(part) as zf:
                bad = zf.testzip()  # every member's CRC
        except zipfile.BadZipFile:
            bad = "(not a zip archive)"
        if bad:
            part.unlink()
            raise FlowopsError(f"mirror {mirror}: {ARCHIVE} is corrupt ({bad}); removed, run again")
        part.rename(archive)
    out = {}
    with zipfile.ZipFile(archive) as zf:
        for split in splits:
            member = f"annotations/instances_{split}.json"
            target = dest / member
            if not target.exists():
                if member not in zf.namelist():
                    raise FlowopsError(f"{archive}: has no {member}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.with_name(target.name + ".part").open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                target.with_name(target.name + ".part").rename(target)
            out[split] = target
    return out


def select(annotation_file: Path, categories: list[str], max_images: int | None) -> list[str]:
    """File names of the images holding any of the categories, by image id, capped deterministically."""
    doc = json.loads(annotation_file.read_text())
    wanted = {c["id"] for c in doc["categories"] if c["name"] in categories}
    ids = sorted({a["image_id"] for a in doc["annotations"] if a["category_id"] in wanted})
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    chosen = [names[i] for i in ids]
    return chosen[:max_images] if max_images else chosen


def verify_jpeg(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:  # verify() does not decode pixels; load() does
        im.load()


sha256 = sha256_file  # the manifest's file hashes

JOURNAL = "manifest.journal"


def load_manifest(dest: Path) -> dict[str, dict]:
    """manifest.json plus every file the journal recorded since (a killed run's finished files)."""
    path = dest / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    journal = dest / JOURNAL
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                entry = json.loads(line)
                manifest[entry["key"]] = {"size": entry["size"], "sha256": entry["sha256"]}
            except (ValueError, KeyError, TypeError):
                continue  # the line a kill cut short
    return manifest


def download_images(mirror: str, dest: Path, wanted: dict[str, list[str]], workers: int, progress=None) -> Outcome:
    """Fetch every wanted image not already present and listed in the manifest."""
    import os
    from concurrent.futures import as_completed

    manifest_path = dest / "manifest.json"
    manifest = load_manifest(dest)
    outcome = Outcome()
    todo = []
    for split, names in wanted.items():
        (dest / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            key = f"{split}/{name}"
            path = dest / key
            entry = manifest.get(key, {})
            # Present: the bytes the manifest recorded when they were verified (a same-size change is not).
            if path.exists() and entry.get("size") == path.stat().st_size and entry.get("sha256") == sha256(path):
                outcome.present.append(key)
            else:
                if path.exists():  # changed since it was verified: fetched again from the start
                    path.unlink()
                todo.append(key)

    def one(key: str) -> tuple[str, str | None, int]:
        path = dest / key
        part = path.with_name(path.name + ".part")
        try:
            transferred = with_retries(
                lambda: fetch(
                    f"{mirror}/{key}", path, on_bytes=progress.advance_bytes if progress else (lambda n: None)
                )
            )
            try:
                verify_jpeg(part)
            except Exception as exc:
                part.unlink(missing_ok=True)  # corrupt: start from scratch next time
                return key, f"not a valid JPEG ({exc})", transferred
            part.rename(path)
            return key, None, transferred
        except urllib.error.HTTPError as exc:
            return key, f"HTTP {exc.code}", 0
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return key, f"{getattr(exc, 'reason', None) or exc!r}", 0
        finally:
            if progress:
                progress.advance_file()

    if progress:
        progress.start(len(todo))
    with (dest / JOURNAL).open("a") as journal, ThreadPoolExecutor(max_workers=workers) as pool:
        for future in as_completed([pool.submit(one, key) for key in todo]):
            key, error, transferred = future.result()
            outcome.bytes += transferred
            if error:
                outcome.failed[key] = error
                continue
            outcome.downloaded.append(key)
            path = dest / key
            manifest[key] = {"size": path.stat().st_size, "sha256": sha256(path)}
            journal.write(json.dumps({"key": key, **manifest[key]}) + "\n")  # recorded the moment it is verified
            journal.flush()
            os.fsync(journal.fileno())
    outcome.downloaded.sort()
    tmp = manifest_path.with_name("manifest.json.part")
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=1))
    tmp.rename(manifest_path)
    (dest / JOURNAL).unlink(missing_ok=True)
    outcome.fingerprint = fingerprint(dest, wanted, manifest)
    return outcome


def fingerprint(dest: Path, wanted: dict[str, list[str]], manifest: dict[str, dict]) -> str:
    """The dataset fingerprint a training on these images records (flowops.segmentation.data.fingerprint)."""
    from flowops.segmentation.data.fingerprint import dataset_fingerprint, split_source

    sources = {}
    for split, names in wanted.items():
        annotation = dest / "annotations" / f"instances_{split}.json"
        files = {n: manifest[f"{split}/{n}"]["sha256"] for n in names if f"{split}/{n}" in manifest}
        sources[split.removesuffix("2017")] = split_source(sha256(annotation), files)
    return dataset_fingerprint(sources)


class Progress:
    """A rich progress bar: a row of files (done/total), a row of bytes and their rate."""

    def __init__(self, console: Console):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskID,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        class PerRow(ProgressColumn):
            """A column shown by row: `files` renders the files row, `data` the bytes row."""

            def __init__(self, files: ProgressColumn | None, data: ProgressColumn) -> None:
                super().__init__()
                self.columns = {"files": files, "bytes": data}

            def render(self, task):
                column = self.columns[task.fields.get("counts", "files")]
                return column.render(task) if column is not None else Text("")

        self.bar = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            PerRow(MofNCompleteColumn(), DownloadColumn()),  # "94/94" files, not "94/94 bytes"
            PerRow(None, TransferSpeedColumn()),
            console=console,
            transient=False,
        )
        self.files = self.bytes = TaskID(0)  # set by start()

    def start(self, files: int) -> None:
        self.bar.start()
        self.files = self.bar.add_task("images", total=files, counts="files")
        self.bytes = self.bar.add_task("bytes", total=None, counts="bytes")

    def advance_file(self) -> None:
        self.bar.advance(self.files)

    def advance_bytes(self, n: int) -> None:
        self.bar.advance(self.bytes, n)

    def stop(self) -> None:
        if self.files is not None:
            self.bar.stop()
