"""`flowops data coco` against a local mirror on 127.0.0.1 with the COCO host's layout."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from flowops.cli import cli

from ..conftest import REPO
from .conftest import BIN


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.lstrip("/")
        self.server.requests.append((path, self.headers.get("Range")))
        mode = self.server.faults.get(path)
        file = self.server.root / path
        if mode == "404" or not file.is_file():
            return self.send_error(404)
        if mode == "500":
            return self.send_error(500)
        data = file.read_bytes()
        if mode == "corrupt":
            data = b"\xff\xd8\xff\xe0" + bytes(len(data) - 4)  # a JPEG header and nothing decodable
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        if start >= len(data):  # RFC 9110: a range that starts past the end is not satisfiable
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.server.delay:
            time.sleep(self.server.delay)
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":  # half of what was promised, then the connection goes away
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror_tree(tmp_path_factory):
    """A generated COCO-format dataset laid out like the COCO host, with the annotations archive."""
    from flowops.segmentation.data.synth import generate

    src = tmp_path_factory.mktemp("synth-coco")
    generate(src, images=30, width=64, height=48, seed=5)
    root = tmp_path_factory.mktemp("mirror")
    (root / "annotations").mkdir()
    with zipfile.ZipFile(root / "annotations" / "annotations_trainval2017.zip", "w") as zf:
        for split in ("train", "val"):
            shutil.copytree(src / split, root / f"{split}2017")
            zf.write(src / "annotations" / f"instances_{split}.json", f"annotations/instances_{split}2017.json")
    return root


@pytest.fixture
def mirror(mirror_tree):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root, server.faults, server.requests, server.delay = mirror_tree, {}, [], 0.0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()


def wanted(tree: Path, split: str, categories=("person", "car")) -> list[str]:
    doc = json.loads(
        zipfile.ZipFile(tree / "annotations" / "annotations_trainval2017.zip").read(
            f"annotations/instances_{split}.json"
        )
    )
    ids = {c["id"] for c in doc["categories"] if c["name"] in categories}
    images = sorted({a["image_id"] for a in doc["annotations"] if a["category_id"] in ids})
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    return [names[i] for i in images]


def coco(mirror, dest: Path, *extra: str):
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "coco",
            "--categories",
            "person,car",
            "--dest",
            str(dest),
            "--mirror",
            mirror.url,
            "--workers",
            "4",
            *extra,
        ],
    )
    return result.exit_code, result.stdout, result.stderr


def test_full_fetch_then_a_rerun_fetches_nothing(mirror, tmp_path):
    dest = tmp_path / "coco"
    code, out, err = coco(mirror, dest)
    assert code == 0, err
    expected = {f"{s}/{n}" for s in ("train2017", "val2017") for n in wanted(mirror.root, s)}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert set(manifest) == expected
    for key, entry in manifest.items():
        assert (dest / key).stat().st_size == entry["size"] == (mirror.root / key).stat().st_size
    assert not list(dest.rglob("*.part"))
    assert (dest / "annotations" / "instances_train2017.json").exists()
    fingerprint = out.splitlines()[-1].split()[2]
    assert out.startswith(f"downloaded {len(expected)} images")
    mirror.requests.clear()
    code, out, _ = coco(mirror, dest)
    assert code == 0
    assert out.startswith(f"nothing to download: all {len(expected)} images are present and verified")
    assert mirror.requests == []  # not even the archive again
    assert out.splitlines()[-1].split()[2] == fingerprint


def test_faults_are_listed_and_the_next_run_completes_what_is_recoverable(mirror, tmp_path):
    dest = tmp_path / "coco"
    names = wanted(mirror.root, "train2017")
    dropped, missing, broken, corrupt = (f"train2017/{n}" for n in names[:4])
    mirror.faults.update({dropped: "drop", missing: "404", broken: "500", corrupt: "corrupt"})
    code, out, err = coco(mirror, dest)
    assert code == 1
    failed = dict(
        line.removeprefix("failed: ").split(": ", 1) for line in err.splitlines() if line.startswith("failed: ")
    )
    assert set(failed) == {dropped, missing, broken, corrupt}
    assert (
        failed[missing] == "HTTP 404"
        and failed[broken] == "HTTP 500"
        and failed[corrupt].startswith("not a valid JPEG")
    )
    assert (
        err.strip().splitlines()[-1]
        == f"4 of {len(names) + len(wanted(mirror.root, 'val2017'))} images failed; run the same command again to retry them"
    )
    for key in failed:
        assert not (dest / key).exists()  # nothing half-done looks complete
    partial = dest / (dropped + ".part")
    assert 0 < partial.stat().st_size < (mirror.root / dropped).stat().st_size
    assert not (dest / (corrupt + ".part")).exists()
    # The mirror recovers, except for the file that is really missing.
    mirror.faults = {missing: "404"}
    mirror.requests.clear()
    code, out, err = coco(mirror, dest)
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("failed: ")] == [f"failed: {missing}: HTTP 404"]
    assert out.startswith("downloaded 3 images")
    resumed = [rng for path, rng in mirror.requests if path == dropped]
    assert (
        len(resumed) == 1 and resumed[0].startswith("bytes=") and int(resumed[0][6:].rstrip("-")) > 0
    )  # Range, not from scratch
    assert (dest / dropped).read_bytes() == (mirror.root / dropped).read_bytes()


def test_max_images_is_deterministic(mirror, tmp_path):
    code, _, _ = coco(mirror, tmp_path / "a", "--max-images", "3", "--splits", "val2017")
    assert code == 0
    got = sorted(p.name for p in (tmp_path / "a" / "val2017").iterdir())
    assert got == sorted(wanted(mirror.root, "val2017")[:3])
    assert not (tmp_path / "a" / "train2017").exists()


def test_corrupt_archive_and_bad_input(mirror, tmp_path, mirror_tree):
    archive = mirror_tree / "annotations" / "annotations_trainval2017.zip"
    mirror.faults["annotations/annotations_trainval2017.zip"] = "corrupt"
    code, _, err = coco(mirror, tmp_path / "c")
    assert code == 1
    assert (
        err
        == f"mirror {mirror.url}: annotations/annotations_trainval2017.zip is corrupt ((not a zip archive)); removed, run again\n"
    )
    assert not list((tmp_path / "c" / ".cache").iterdir())
    assert archive.exists()
    result = CliRunner().invoke(
        cli, ["data", "coco", "--categories", "person,zebr", "--dest", str(tmp_path / "d"), "--mirror", mirror.url]
    )
    assert (result.exit_code, result.stderr) == (
        1,
        "--categories: 'zebr' is not a COCO category (did you mean 'zebra'?)\n",
    )


def test_training_after_a_max_images_fetch_uses_what_is_there_with_the_same_fingerprint(mirror, tmp_path, store):
    dest = tmp_path / "coco"
    code, out, err = coco(mirror, dest, "--max-images", "4")
    assert code == 0, err
    printed = out.split("dataset fingerprint ")[1].split()[0]
    spec = {
        "name": "on-coco",
        "categories": ["person", "car"],
        "image_size": 32,
        "epochs": 1,
        "batch_size": 4,
        "max_batches_per_epoch": 2,
        "experiment_name": "coco-fetch",
        "dataset": "coco",
    }
    path = tmp_path / "on-coco.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "FLOWOPS_COCO_DIR": str(dest)}
    proc = subprocess.run(
        [str(BIN / "flowops"), "train", str(path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = len(wanted(mirror.root, "train2017"))
    assert (
        f"train: {total - 4} of {total} images with person, car are not downloaded; using the 4 present" in proc.stderr
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("coco-fetch").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["dataset"] == "coco"
    assert run.data.tags["flowops.images_train"] == "4" and run.data.tags["flowops.images_skipped"] == "0"
    assert run.data.tags["flowops.dataset_fingerprint"] == printed  # one definition of "the same data"


def test_a_complete_part_file_is_verified_and_kept(mirror, tmp_path):
    """A .part that is already whole gets 416 from a compliant server: it is verified and kept, not refetched."""
    dest = tmp_path / "coco"
    name = wanted(mirror.root, "val2017")[0]
    (dest / "val2017").mkdir(parents=True)
    (dest / "val2017" / f"{name}.part").write_bytes((mirror.root / "val2017" / name).read_bytes())
    (dest / ".cache").mkdir()
    archive = mirror.root / "annotations" / "annotations_trainval2017.zip"
    (dest / ".cache" / "annotations_trainval2017.zip.part").write_bytes(archive.read_bytes())
    code, _, err = coco(mirror, dest, "--splits", "val2017")
    assert code == 0, err
    asked = [(p, r) for p, r in mirror.requests if p in (f"val2017/{name}", "annotations/annotations_trainval2017.zip")]
    assert sorted(asked) == sorted(
        [
            (f"val2017/{name}", f"bytes={(mirror.root / 'val2017' / name).stat().st_size}-"),
            ("annotations/annotations_trainval2017.zip", f"bytes={archive.stat().st_size}-"),
        ]
    )  # one ranged request each, answered 416, and nothing downloaded again
    assert (dest / "val2017" / name).read_bytes() == (mirror.root / "val2017" / name).read_bytes()
    assert f"val2017/{name}" in json.loads((dest / "manifest.json").read_text())


def test_a_killed_download_loses_only_the_files_in_flight(mirror, tmp_path):
    dest = tmp_path / "coco"
    mirror.delay = 0.3  # a slow mirror: the kill lands mid-way
    cmd = [str(BIN / "flowops"), "data", "coco", "--categories", "person,car", "--dest", str(dest)]
    proc = subprocess.Popen(
        [*cmd, "--mirror", mirror.url, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = dest / "manifest.journal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = {json.loads(line)["key"] for line in journal.read_text().splitlines() if line.endswith("}")}
    assert len(done) >= 4 and not (dest / "manifest.json").exists()
    mirror.delay, mirror.requests[:] = 0.0, []
    code, _, err = coco(mirror, dest)
    assert code == 0, err
    refetched = {p for p, _ in mirror.requests if not p.startswith("annotations/")}
    assert refetched and not (refetched & done)  # nothing the killed run had finished is fetched again
    expected = {f"{s}/{n}" for s in ("train2017", "val2017") for n in wanted(mirror.root, s)}
    assert set(json.loads((dest / "manifest.json").read_text())) == expected and not journal.exists()


def test_an_image_changed_in_place_is_fetched_again(mirror, tmp_path):
    """#32.13: zeroing 4 KB of a verified JPEG kept its size; the next run said "all present and verified"
    and training used the corrupted pixels. Present now means the bytes the manifest recorded."""
    dest = tmp_path / "coco"
    assert coco(mirror, dest, "--splits", "val2017")[0] == 0
    name = wanted(mirror.root, "val2017")[0]
    image = dest / "val2017" / name
    original = image.read_bytes()
    image.write_bytes(
        original[:100] + bytes(min(4096, len(original) - 200)) + original[100 + min(4096, len(original) - 200) :]
    )
    assert image.stat().st_size == len(original) and image.read_bytes() != original
    mirror.requests.clear()
    code, out, err = coco(mirror, dest, "--splits", "val2017")
    assert code == 0, err
    assert [p for p, _ in mirror.requests if p.startswith("val2017/")] == [f"val2017/{name}"]
    assert out.startswith("downloaded 1 images") and image.read_bytes() == original


def test_a_part_file_longer_than_the_image_is_fetched_again(mirror, tmp_path):
    """#32.14: a .part longer than the file is answered 416 (`bytes */N`, N shorter): it was kept, and
    trailing bytes after the JPEG's end passed the decode check. Now N is compared, and it starts over."""
    dest = tmp_path / "coco"
    name = wanted(mirror.root, "val2017")[0]
    (dest / "val2017").mkdir(parents=True)
    original = (mirror.root / "val2017" / name).read_bytes()
    (dest / "val2017" / f"{name}.part").write_bytes(original + b"trailing junk")
    code, _, err = coco(mirror, dest, "--splits", "val2017")
    assert code == 0, err
    asked = [r for p, r in mirror.requests if p == f"val2017/{name}"]
    assert asked == [f"bytes={len(original) + 13}-", None]  # answered 416 */N, then the whole file
    assert (dest / "val2017" / name).read_bytes() == original
