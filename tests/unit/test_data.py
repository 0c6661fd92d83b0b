"""COCO-format loading, the decoded cache and the synthetic generator."""

import json
import os

import numpy as np
import pytest

from flowops.errors import FlowopsError
from flowops.segmentation.data import cache
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.data.synth import generate
from flowops.segmentation.experiment import ExperimentSpec


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, images=30, width=96, height=64, seed=3)
    return root


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def spec_for(root, categories=("person", "car"), **kw) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {"name": "t", "categories": list(categories), "dataset": {"root": str(root)}, **kw}
    )


def test_synth_has_the_hard_cases(dataset):
    doc = json.loads((dataset / "annotations" / "instances_train.json").read_text())
    anns = doc["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    assert {type(a["segmentation"]["counts"]) for a in crowd} == {str, list}  # both RLE encodings
    assert any(len(a["segmentation"]) > 1 for a in anns if not a["iscrowd"])  # multi-part polygons
    assert {c["name"] for c in doc["categories"]} == {"person", "car", "dog", "bicycle"}
    with_selected = {a["image_id"] for a in anns if a["category_id"] in (1, 3, 18)}
    assert len(with_selected) < len(doc["images"])  # some images hold none of them
    from PIL import Image

    modes = {Image.open(dataset / "train" / im["file_name"]).mode for im in doc["images"]}
    assert modes == {"RGB", "L"}  # grayscale JPEGs too


def test_synth_is_reproducible(tmp_path):
    a = generate(tmp_path / "a", images=10, seed=5)
    b = generate(tmp_path / "b", images=10, seed=5)
    assert a["train"].read_bytes() == b["train"].read_bytes()
    assert (tmp_path / "a/train/000001.jpg").read_bytes() == (tmp_path / "b/train/000001.jpg").read_bytes()


def test_split_selects_images_with_the_categories(dataset):
    split = open_split(spec_for(dataset, ["dog"]), "train")
    ids = {a["image_id"] for a in split.coco.dataset["annotations"] if a["category_id"] == 18}
    assert {im["id"] for im in split.images} == ids
    assert split.class_of == {18: 1}


def test_cache_hit_and_miss_are_keyed_correctly(dataset, cache_dir):
    split = open_split(spec_for(dataset), "train")
    first = cache.load_split(split, ["person", "car"], 32)
    assert not first.hit
    assert first.images.shape[1:] == (32, 32, 3) and first.images.dtype == np.uint8
    assert first.masks.shape[1:] == (32, 32) and set(np.unique(first.masks)) <= {0, 1, 2, 255}  # 255: crowds
    again = cache.load_split(split, ["person", "car"], 32)
    assert again.hit and np.array_equal(again.images, first.images) and np.array_equal(again.masks, first.masks)
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable  # mapped, read-only: no second copy
    assert again.fingerprint == first.fingerprint
    assert not cache.load_split(split, ["person", "car"], 64).hit  # other size
    assert not cache.load_split(open_split(spec_for(dataset, ["car", "person"]), "train"), ["car", "person"], 32).hit
    # a changed annotation file is a new key
    ann = dataset / "annotations" / "instances_train.json"
    original = ann.read_text()
    try:
        ann.write_text(original.replace('"synthetic"', '"synthetic2"', 1))
        assert not cache.load_split(open_split(spec_for(dataset), "train"), ["person", "car"], 32).hit
    finally:
        ann.write_text(original)
    assert len(list(cache_dir.iterdir())) == 4


def test_a_cache_that_cannot_be_written_costs_the_entry_not_the_data(dataset, tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocked))
    built = cache.load_split(open_split(spec_for(dataset), "train"), ["person", "car"], 32)
    assert not built.hit and len(built.images) == len(built.file_names) > 0
    assert "could not write the decoded cache" in capsys.readouterr().err
    assert blocked.is_file()  # nothing half-written in its place


def test_an_annotation_of_a_missing_image_is_skipped_and_counted(tmp_path):
    """Hardening 3 item 12: one annotation whose image_id has no image stopped the whole
    training with a bare KeyError and a traceback."""
    root = tmp_path / "d"
    generate(root, images=20, width=64, height=64, seed=4)
    path = root / "annotations" / "instances_train.json"
    doc = json.loads(path.read_text())
    person = next(c["id"] for c in doc["categories"] if c["name"] == "person")
    stray = {**doc["annotations"][0], "id": 999_001, "image_id": 987_654, "category_id": person}
    doc["annotations"] += [stray, "not an object"]
    path.write_text(json.dumps(doc))
    spec = spec_for(root, ["person", "car"])
    split = open_split(spec, "train")
    assert split.orphans == [
        "train: annotation 999001: image_id 987654 is not an image of instances_train.json",
        "train: 'not an object': not an annotation object",
    ]
    assert split.notes[0] == "train: 2 annotations name an image the file does not have: skipped"
    assert 987_654 not in {im["id"] for im in split.images}
    built = cache.load_split(split, spec.categories, 32)  # the rest loads as before
    assert len(built.file_names) == len(split.images) > 0


def test_an_annotation_of_an_unlisted_category_is_skipped_and_counted(tmp_path):
    """#32.15: annotations whose category_id the file does not list were dropped without a word."""
    root = tmp_path / "d"
    generate(root, images=20, width=64, height=64, seed=4)
    path = root / "annotations" / "instances_train.json"
    doc = json.loads(path.read_text())
    doc["annotations"].append({**doc["annotations"][0], "id": 999_002, "category_id": 4242})
    path.write_text(json.dumps(doc))
    split = open_split(spec_for(root, ["person", "car"]), "train")
    assert split.orphans == ["train: annotation 999002: category_id 4242 is not a category of instances_train.json"]
    assert split.notes[0] == "train: 1 annotations name a category the file does not list: skipped"


def test_image_size_disagreeing_with_annotations_is_skipped_with_the_reason(tmp_path):
    root = tmp_path / "d"
    generate(root, images=30, width=64, height=64, seed=3)
    spec = spec_for(root, ["person", "car", "dog"])
    used = [im["file_name"] for im in open_split(spec, "train").images]
    from PIL import Image

    Image.new("RGB", (48, 64), (9, 9, 9)).save(root / "train" / used[0])
    result = cache.load_split(open_split(spec, "train"), spec.categories, 32)
    assert result.skipped == [f"{used[0]}: image is 48x64, annotations say 64x64"]


def test_unreadable_images_are_counted_then_fail_over_the_threshold(tmp_path):
    root = tmp_path / "d"
    generate(root, images=30, width=64, height=64, seed=1)
    spec = spec_for(root, ["person", "car", "dog"])
    used = [im["file_name"] for im in open_split(spec, "train").images]
    first = root / "train" / used[0]
    first.write_bytes(first.read_bytes()[:200])  # truncated JPEG
    result = cache.load_split(open_split(spec, "train"), spec.categories, 32)
    assert len(result.skipped) == 1 and result.skipped[0].startswith(used[0])
    assert used[0] not in result.file_names and len(result.file_names) == len(used) - 1
    for name in used[1:5]:
        (root / "train" / name).write_bytes(b"not a jpeg")
    with pytest.raises(FlowopsError, match=rf"5 of {len(used)} images unreadable \(limit 10%\)"):
        cache.load_split(open_split(spec, "train"), spec.categories, 48)


def test_fingerprint_changes_with_image_content(tmp_path):
    root = tmp_path / "d"
    generate(root, images=12, width=64, height=64, seed=2)
    spec = spec_for(root, ["person", "car", "dog"])
    before = cache.load_split(open_split(spec, "val"), spec.categories, 32).fingerprint
    first = sorted((root / "val").iterdir())[0]
    from PIL import Image

    Image.new("RGB", (64, 64), (1, 2, 3)).save(first)
    after = cache.load_split(open_split(spec, "val"), spec.categories, 32)
    assert not after.hit and before != after.fingerprint  # a new key: the image's content changed


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda r: (r / "annotations" / "instances_train.json").unlink(),
            r"no annotation file annotations/instances_train\.json for the train split",
        ),
        (
            lambda r: (r / "annotations" / "instances_train.json").write_text("{oops"),
            r"not COCO JSON: not valid JSON \(line 1\)",
        ),
        (
            lambda r: (r / "annotations" / "instances_train.json").write_text('{"images": []}'),
            r"not COCO JSON: no 'annotations', 'categories' list",
        ),
    ],
)
def test_bad_datasets(tmp_path, mutate, message):
    root = tmp_path / "d"
    generate(root, images=10, width=64, height=64)
    mutate(root)
    with pytest.raises(FlowopsError, match=message):
        open_split(spec_for(root), "train")


def test_category_absent_from_dataset(dataset):
    with pytest.raises(
        FlowopsError, match=r"category 'zebra' is not in this dataset; it has: bicycle, car, dog, person"
    ):
        open_split(spec_for(dataset, ["zebra"]), "train")
    with pytest.raises(FlowopsError, match=r"category 'dgo' is not in this dataset \(did you mean 'dog'\?\)"):
        open_split(spec_for(dataset, ["dgo"]), "train")


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(FlowopsError, match=r"^dataset .*nope: no such folder$"):
        open_split(spec_for(tmp_path / "nope"), "train")


def _poison(folder, consistent: bool) -> None:
    """Zero the masks (no labelled pixel left); with `consistent`, also forge meta.json's content hash."""
    size = (folder / "masks.bin").stat().st_size
    (folder / "masks.bin").write_bytes(bytes(size))
    if consistent:
        meta = json.loads((folder / "meta.json").read_text())
        n, s = meta["count"], meta["size"]
        images = np.fromfile(folder / "images.bin", np.uint8).reshape(n, s, s, 3)
        meta["content_sha256"] = cache.content_sha256(images, np.zeros((n, s, s), np.uint8))
        (folder / "meta.json").write_text(json.dumps(meta))


def _entry(cache_dir):
    (key,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    return key / "train"


def test_a_poisoned_cache_entry_is_detected_and_decoded_again(dataset, cache_dir, capsys):
    split = open_split(spec_for(dataset), "train")
    clean = cache.load_split(split, ["person", "car"], 32)
    clean_masks = np.array(clean.masks)  # a copy: the entry's files are about to change under its map
    assert clean_masks.any()
    _poison(_entry(cache_dir), consistent=False)
    used = cache.load_split(split, ["person", "car"], 32)
    assert not used.hit and np.array_equal(used.masks, clean_masks)
    assert used.fingerprint == clean.fingerprint
    assert "does not match the content hash in its meta.json; decoding the dataset again" in capsys.readouterr().err


def test_a_forged_entry_is_caught_by_the_trusted_index_and_replaced_by_a_trusted_job(
    dataset, cache_dir, tmp_path, monkeypatch, capsys
):
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv(cache.INDEX_ENV, str(index))
    monkeypatch.setenv(cache.WRITER_ENV, "trusted")  # a job on main builds the entry and records its hash
    split = open_split(spec_for(dataset), "train")
    clean = cache.load_split(split, ["person", "car"], 32)
    clean_masks = np.array(clean.masks)
    assert len(list(index.iterdir())) == 1
    # A PR job with write access to the cache forges an entry whose meta.json agrees with it.
    _poison(_entry(cache_dir), consistent=True)
    monkeypatch.delenv(cache.WRITER_ENV)
    used = cache.load_split(split, ["person", "car"], 32)  # a PR job: rebuilt for itself, entry left
    assert not used.hit and np.array_equal(used.masks, clean_masks) and used.fingerprint == clean.fingerprint
    assert f"does not match the content hash in the trusted index {index}" in capsys.readouterr().err
    assert not np.fromfile(_entry(cache_dir) / "masks.bin", np.uint8).any()
    monkeypatch.setenv(cache.WRITER_ENV, "trusted")
    assert not cache.load_split(split, ["person", "car"], 32).hit  # a trusted job replaces it
    again = cache.load_split(split, ["person", "car"], 32)
    assert again.hit and np.array_equal(again.masks, clean_masks) and again.fingerprint == clean.fingerprint


def test_without_an_index_a_consistent_forgery_still_shows_in_the_fingerprint(dataset, cache_dir):
    split = open_split(spec_for(dataset), "train")
    clean = cache.load_split(split, ["person", "car"], 32)
    _poison(_entry(cache_dir), consistent=True)
    used = cache.load_split(split, ["person", "car"], 32)
    assert used.hit and not used.masks.any()
    assert used.fingerprint != clean.fingerprint  # the run records the content it trained on


def _exif_rotated_jpeg(path, display):
    """Store `display` turned 90 degrees, with EXIF Orientation 6 saying how to turn it back (a phone photo)."""
    from PIL import Image

    stored = display.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return stored


def test_exif_orientation_is_applied_in_training_and_serving_alike(tmp_path, cache_dir):
    from PIL import Image

    from flowops.serving.images import decode_image

    display = Image.new("RGB", (48, 64), (0, 0, 255))
    display.paste((255, 0, 0), (0, 0, 24, 16))  # a red object at the top left, as a person sees the photo
    (tmp_path / "d" / "train").mkdir(parents=True)
    stored = _exif_rotated_jpeg(tmp_path / "d" / "train" / "phone.jpg", display)
    assert stored.size == (64, 48)  # stored sideways
    doc = {
        "images": [{"id": 1, "file_name": "phone.jpg", "width": 48, "height": 64}],  # the size as displayed
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 384,
                "bbox": [0, 0, 24, 16],
                "segmentation": [[0, 0, 24, 0, 24, 16, 0, 16]],
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "d" / "annotations").mkdir()
    (tmp_path / "d" / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    built = cache.load_split(open_split(spec_for(tmp_path / "d", ["person"]), "train"), ["person"], 32)
    assert built.skipped == []  # the displayed size matches the annotations
    image, mask = built.images[0], built.masks[0]
    assert mask[2, 2] == 1 and mask[30, 30] == 0
    red = (image[..., 0] > 150) & (image[..., 2] < 100)
    assert red[2, 2] and not red[30, 30]  # pixels and mask agree: the object is where it was annotated
    served, full = decode_image((tmp_path / "d" / "train" / "phone.jpg").read_bytes(), 10**6)
    assert full == (48, 64) and served.shape == (64, 48, 3) and served[2, 2, 0] > 150 and served[60, 40, 2] > 150


def test_completing_a_partial_dataset_makes_a_new_entry_with_every_image(dataset, cache_dir, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    split = open_split(spec_for(root), "train")
    missing = root / "train" / split.images[0]["file_name"]
    kept = missing.read_bytes()
    missing.unlink()
    partial = cache.load_split(split, ["person", "car"], 32)
    assert len(partial.skipped) == 1 and len(partial.file_names) == len(split.images) - 1
    missing.write_bytes(kept)  # the download completes
    whole = cache.load_split(open_split(spec_for(root), "train"), ["person", "car"], 32)
    assert not whole.hit and whole.skipped == [] and len(whole.file_names) == len(split.images)
    assert whole.source != partial.source
    # the same name with other bytes: another entry, another fingerprint
    from PIL import Image

    with Image.open(missing) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(missing, "JPEG")
    replaced = cache.load_split(open_split(spec_for(root), "train"), ["person", "car"], 32)
    assert not replaced.hit and replaced.source != whole.source


def test_max_images_and_negatives_pick_the_same_images_for_the_same_seed(dataset):
    everything = open_split(spec_for(dataset), "train").images
    capped = open_split(spec_for(dataset, max_images=5), "train").images
    assert len(capped) == 5 and {i["id"] for i in capped} <= {i["id"] for i in everything}
    assert capped == open_split(spec_for(dataset, max_images=5), "train").images
    assert capped != open_split(spec_for(dataset, max_images=5, seed=7), "train").images
    mixed = open_split(spec_for(dataset, ["dog"], max_images=6, negatives=0.5), "train")
    coco = mixed.coco
    with_dog = [i for i in mixed.images if coco.getAnnIds(imgIds=[i["id"]], catIds=list(mixed.class_of))]
    assert len(mixed.images) == 6 and len(with_dog) == 3  # half background-only


def test_a_killed_cache_build_resumes_where_it_stopped(tmp_path, cache_dir, monkeypatch):
    """A real process builds the cache a few images at a time and is killed (SIGKILL) half-way."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "d"
    generate(root, images=120, width=64, height=48, seed=4)
    child = f"""
import time
from flowops.segmentation.data import cache, entry
from flowops.segmentation.data.coco import open_split
from flowops.segmentation.experiment import ExperimentSpec
entry.CHUNK = 4
decode = cache._decode
def slow(*args):
    time.sleep(0.02)
    return decode(*args)
cache._decode = slow
spec = ExperimentSpec.model_validate({{"name": "t", "categories": ["person", "car"], "dataset": {{"root": "{root}"}}}})
cache.load_split(open_split(spec, "train"), ["person", "car"], 32)
"""
    proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, cache.CACHE_ENV: str(cache_dir)})
    progress = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(cache_dir.glob("*/.train.partial/progress.jsonl"))
        lines = found[0].read_text().splitlines() if found else []
        if lines and lines[-1].endswith("}") and json.loads(lines[-1])["done"] >= 20:
            progress = found[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress is not None, "the build never got going"
    done = max(json.loads(line)["done"] for line in progress.read_text().splitlines() if line.endswith("}"))
    split = open_split(spec_for(root), "train")
    assert 20 <= done < len(split.images)
    calls = []
    decode = cache._decode
    monkeypatch.setattr(cache, "_decode", lambda *a: calls.append(1) or decode(*a))
    resumed = cache.load_split(split, ["person", "car"], 32)
    assert 0 < len(calls) <= len(split.images) - done  # only what the killed build had not finished
    monkeypatch.setattr(cache, "_decode", decode)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "fresh"))
    fresh = cache.load_split(split, ["person", "car"], 32)
    assert resumed.content == fresh.content and resumed.file_names == fresh.file_names  # the same entry


def test_processes_and_threads_build_the_same_entry(dataset, tmp_path):
    """Large splits on many cores are decoded by worker processes: the rows must not depend on it."""
    from flowops.segmentation.data import entry

    split = open_split(spec_for(dataset), "train")
    built = {}
    for processes in (False, True):
        partial = tmp_path / f"processes-{processes}"
        progress = entry.build(
            partial, split.images, 32, lambda im: cache._job(split, im, 32), cache._decode, 2, processes
        )
        digest = entry.content_digest(partial / "images.bin", partial / "masks.bin", len(progress["kept"]), 32)
        built[processes] = (progress["kept"], progress["hashes"], digest)
    assert built[True] == built[False] and len(built[True][0]) == len(split.images)


def test_the_download_progress_counts_files_as_files_and_bytes_as_bytes():
    """Hardening 3 item 16: the files row said "94/94 bytes 71 bytes/s"."""
    import io

    from rich.console import Console

    from flowops.segmentation.data.download import Progress

    out = io.StringIO()
    progress = Progress(Console(file=out, width=120, force_terminal=False))
    progress.start(94)
    for _ in range(94):
        progress.advance_file()
    progress.advance_bytes(4_000_000)
    progress.stop()
    files, data = [line.split() for line in out.getvalue().splitlines()[-2:]]
    assert files[0] == "images" and files[2:] == ["94/94"]
    assert data[0] == "bytes" and data[2:4] == ["4.0/?", "MB"]
