"""COCO-format datasets: open a split, check the categories, list the images to use."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from flowops.errors import FlowopsError
from flowops.segmentation.experiment import COCO_PATHS, DatasetPaths, ExperimentSpec
from flowops.suggest import did_you_mean

COCO_DIR_ENV = "FLOWOPS_COCO_DIR"  # where `flowops data coco` keeps the COCO 2017 download


@dataclass
class Split:
    """One split of a COCO-format dataset, restricted to the selected categories."""

    name: str
    annotation_file: Path
    images_dir: Path
    coco: object  # pycocotools.coco.COCO
    class_of: dict[int, int]  # COCO category id -> class index (1..n)
    images: list[dict]  # the image records used: with a selected category, plus any background-only ones
    annotation_sha256: str
    notes: list[str] = field(default_factory=list)  # what the selection left out, for the user
    orphans: list[str] = field(default_factory=list)  # annotations of an image the file does not have


def dataset_paths(spec: ExperimentSpec) -> DatasetPaths:
    """The dataset's folders; `coco` resolves to the managed COCO download."""
    if spec.dataset != "coco":
        return spec.dataset
    root = os.environ.get(COCO_DIR_ENV, str(Path.home() / ".cache" / "flowops" / "coco"))
    return DatasetPaths(root=root, **COCO_PATHS)


def open_split(spec: ExperimentSpec, split: str) -> Split:
    """Load one split's annotations; one-line FlowopsError for anything unusable."""
    paths = dataset_paths(spec)
    root = Path(paths.root)
    if not root.is_dir():
        hint = " (run 'flowops data coco' first)" if spec.dataset == "coco" else ""
        raise FlowopsError(f"dataset {root}: no such folder{hint}")
    ann_file = root / getattr(paths, f"{split}_annotations")
    images_dir = root / getattr(paths, f"{split}_images")
    if not ann_file.is_file():
        raise FlowopsError(f"dataset {root}: no annotation file {ann_file.relative_to(root)} for the {split} split")
    raw = ann_file.read_bytes()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise FlowopsError(f"{ann_file}: not COCO JSON: not valid JSON{where}") from None
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(doc, dict) or not isinstance(doc.get(k), list)
    ]
    if missing:
        raise FlowopsError(f"{ann_file}: not COCO JSON: no {', '.join(repr(k) for k in missing)} list")
    if not images_dir.is_dir():
        raise FlowopsError(f"dataset {root}: no image folder {images_dir.relative_to(root)} for the {split} split")

    # An annotation whose image_id names no image of the file is left out and counted (pycocotools
    # would index it, and the image lookups then fail with a bare KeyError).
    known = {image.get("id") for image in doc["images"] if isinstance(image, dict)}
    kept = [a for a in doc["annotations"] if isinstance(a, dict) and a.get("image_id") in known]
    orphans = [
        f"{split}: annotation {a.get('id')}: image_id {a.get('image_id')!r} is not an image of {ann_file.name}"
        if isinstance(a, dict)
        else f"{split}: {str(a)[:40]!r}: not an annotation object"
        for a in doc["annotations"]
        if not (isinstance(a, dict) and a.get("image_id") in known)
    ]
    # Likewise an annotation of a category the file does not list: left out and counted, not silently.
    listed = {c.get("id") for c in doc["categories"] if isinstance(c, dict)}
    unlisted = [
        f"{split}: annotation {a.get('id')}: category_id {a.get('category_id')!r} is not a category of {ann_file.name}"
        for a in kept
        if a.get("category_id") not in listed
    ]
    doc["annotations"] = [a for a in kept if a.get("category_id") in listed]

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    by_name = {c["name"]: c["id"] for c in doc["categories"]}
    class_of = {}
    for index, name in enumerate(spec.categories, start=1):
        if name not in by_name:
            raise FlowopsError(
                f"{ann_file}: category {name!r} is not in this dataset{did_you_mean(name, by_name)}; it has: "
                f"{', '.join(sorted(by_name))}"
            )
        class_of[by_name[name]] = index
    image_ids = sorted({i for cid in class_of for i in coco.getImgIds(catIds=[cid])})
    if not image_ids:
        raise FlowopsError(f"{ann_file}: no image contains any of {', '.join(spec.categories)}")
    chosen, notes = select_images(spec, coco, image_ids, images_dir, split)
    if unlisted:
        notes.insert(0, f"{split}: {len(unlisted)} annotations name a category the file does not list: skipped")
    if orphans:
        notes.insert(0, f"{split}: {len(orphans)} annotations name an image the file does not have: skipped")
    if not chosen:
        raise FlowopsError(
            f"{images_dir}: none of the {len(image_ids)} images with {', '.join(spec.categories)} is here"
        )
    return Split(
        split,
        ann_file,
        images_dir,
        coco,
        class_of,
        coco.loadImgs(chosen),
        hashlib.sha256(raw).hexdigest(),
        notes,
        orphans + unlisted,
    )


def select_images(
    spec: ExperimentSpec, coco, positive: list[int], images_dir: Path, split: str
) -> tuple[list[int], list[str]]:
    """The image ids a split uses, and notes on what was left out.

    Images holding a selected category; for the managed COCO download only those downloaded
    (`flowops data coco --max-images` fetches a subset). `max_images` caps the split and
    `negatives` adds background-only images as that fraction of it, both chosen by the seed,
    so the same spec always picks the same images.
    """
    import numpy as np

    notes = []
    names = {i: coco.imgs[i]["file_name"] for i in coco.imgs}
    negative = sorted(set(coco.imgs) - set(positive)) if spec.negatives else []
    if spec.dataset == "coco":  # a partial download is normal: use what is here, and say so
        present = [i for i in positive if (images_dir / names[i]).is_file()]
        if len(present) < len(positive):
            notes.append(
                f"{split}: {len(positive) - len(present)} of {len(positive)} images with "
                f"{', '.join(spec.categories)} are not downloaded; using the {len(present)} present"
            )
        positive = present
        negative = [i for i in negative if (images_dir / names[i]).is_file()]
    rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1])

    def pick(ids: list[int], k: int) -> list[int]:
        return ids if k >= len(ids) else sorted(int(i) for i in rng.choice(ids, size=k, replace=False))

    fraction = spec.negatives
    if spec.max_images:
        positive = pick(positive, max(1, round(spec.max_images * (1 - fraction))))
    wanted_negatives = round(len(positive) * fraction / (1 - fraction)) if fraction else 0
    if spec.max_images:
        wanted_negatives = min(wanted_negatives, max(0, spec.max_images - len(positive)))
    chosen_negatives = pick(negative, wanted_negatives)
    if len(chosen_negatives) < wanted_negatives:
        notes.append(f"{split}: only {len(chosen_negatives)} background-only images for negatives: {fraction}")
    total = len(positive) + len(chosen_negatives)
    if spec.max_images and total < spec.max_images:
        notes.append(f"{split}: max_images {spec.max_images}, but only {total} images are available")
    return sorted(positive + chosen_negatives), notes
