"""A small COCO-format dataset for the demo and the tests (`flowops data synth`).

Each category has its own shape and colour family, so a tiny model learns it within a
minute on a CPU. The annotations exercise what real COCO contains and what the original
project got wrong: polygons in several parts, crowd RLE in both encodings, overlapping
objects of different categories, images with none of the selected categories, and
grayscale JPEGs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# name -> (COCO id, base RGB colour). "bicycle" is never selected by the examples: images
# holding only bicycles are images "without the selected categories".
CATEGORIES = {
    "person": (1, (200, 60, 50)),
    "car": (3, (40, 70, 200)),
    "dog": (18, (60, 170, 60)),
    "bicycle": (2, (210, 190, 40)),
}
SPLITS = {"train": 0.8, "val": 0.2}


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


def shape_for(name: str, rng: np.random.Generator, w: int, h: int) -> list[tuple[float, float]]:
    """Polygon of one object: person = tall ellipse, car = wide box, dog = triangle, bicycle = diamond."""
    s = min(w, h)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.75) * h
    if name == "person":
        return ellipse(cx, cy, s * rng.uniform(0.07, 0.11), s * rng.uniform(0.18, 0.26))
    if name == "car":
        hw, hh = s * rng.uniform(0.18, 0.26), s * rng.uniform(0.08, 0.12)
        return [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)]
    if name == "dog":
        r = s * rng.uniform(0.13, 0.19)
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    r = s * rng.uniform(0.1, 0.14)
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]


def clip_x(poly: list[tuple[float, float]], x: float, keep_left: bool) -> list[tuple[float, float]]:
    """Sutherland-Hodgman against one vertical line: the part left (or right) of x."""
    inside = (lambda p: p[0] <= x) if keep_left else (lambda p: p[0] >= x)
    out = []
    for i, cur in enumerate(poly):
        prev = poly[i - 1]
        if inside(cur) != inside(prev):
            t = (x - prev[0]) / (cur[0] - prev[0])
            out.append((x, prev[1] + t * (cur[1] - prev[1])))
        if inside(cur):
            out.append(cur)
    return out


def flat(poly: list[tuple[float, float]]) -> list[float]:
    return [round(v, 2) for p in poly for v in p]


def colour(name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    base = np.array(CATEGORIES[name][1]) + rng.integers(-25, 26, 3)
    r, g, b = (int(v) for v in np.clip(base, 0, 255))
    return r, g, b


def rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with zeros."""
    pixels = np.asfortranarray(mask).ravel(order="F")
    changes = np.flatnonzero(np.diff(pixels)) + 1
    bounds = np.concatenate([[0], changes, [pixels.size]])
    counts = np.diff(bounds).tolist()
    if pixels[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_compressed(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


class _Writer:
    def __init__(self, out: Path, width: int, height: int, rng: np.random.Generator):
        self.out, self.w, self.h, self.rng = out, width, height, rng
        self.ann_id = 0

    def background(self) -> Image.Image:
        noise = self.rng.normal(128, 18, (self.h, self.w, 3)) + self.rng.uniform(-30, 30, 3)
        return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))

    def ann(self, image_id: int, name: str, segmentation, area: float, bbox, crowd: int = 0) -> dict:
        self.ann_id += 1
        return {
            "id": self.ann_id,
            "image_id": image_id,
            "category_id": CATEGORIES[name][0],
            "segmentation": segmentation,
            "area": float(area),
            "bbox": [float(v) for v in bbox],
            "iscrowd": crowd,
        }

    def polygon_ann(self, image_id, name, parts) -> dict:
        xs = [x for part in parts for x, _ in part]
        ys = [y for part in parts for _, y in part]
        area = sum(_shoelace(p) for p in parts)
        return self.ann(
            image_id, name, [flat(p) for p in parts], area, [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        )

    def image(self, image_id: int, split: str) -> tuple[dict, list[dict]]:
        """One image: mostly ordinary objects, every few images one of the special cases."""
        img, anns = self.background(), []
        draw = ImageDraw.Draw(img)
        kind = image_id % 7
        if kind == 6:  # none of the selected categories: only a bicycle, or nothing at all
            if image_id % 2:
                poly = shape_for("bicycle", self.rng, self.w, self.h)
                draw.polygon(poly, fill=colour("bicycle", self.rng))
                anns.append(self.polygon_ann(image_id, "bicycle", [poly]))
        else:
            names = list(self.rng.choice(["person", "car", "dog"], size=self.rng.integers(1, 4), replace=False))
            # Larger shapes first, so a later (smaller) one is drawn on top: the overlap rule
            # in masks.py gives shared pixels to the smaller object, as the picture does.
            polys = sorted(((n, shape_for(n, self.rng, self.w, self.h)) for n in names), key=lambda t: -_shoelace(t[1]))
            for name, poly in polys:
                draw.polygon(poly, fill=colour(name, self.rng))
                if kind == 1 and name == "person":  # occluded by a pole: a polygon in two parts
                    x = sum(p[0] for p in poly) / len(poly)
                    half = max(2.0, self.w * 0.02)
                    draw.rectangle(
                        [x - half, 0, x + half, self.h], fill=tuple(int(v) for v in self.rng.integers(90, 160, 3))
                    )
                    parts = [clip_x(poly, x - half, True), clip_x(poly, x + half, False)]
                    anns.append(self.polygon_ann(image_id, name, [p for p in parts if len(p) >= 3]))
                else:
                    anns.append(self.polygon_ann(image_id, name, [poly]))
            if kind in (2, 3):  # a crowd of small persons as one RLE: compressed or not
                anns.append(self.crowd(img, image_id, compressed=kind == 2))
        gray = image_id % 5 == 4
        file_name = f"{image_id:06d}.jpg"
        (img.convert("L") if gray else img).save(self.out / split / file_name, quality=92)
        return {"id": image_id, "file_name": file_name, "width": self.w, "height": self.h}, anns

    def crowd(self, img: Image.Image, image_id: int, compressed: bool) -> dict:
        layer = Image.new("L", (self.w, self.h), 0)
        draw, paint = ImageDraw.Draw(layer), ImageDraw.Draw(img)
        y = self.rng.uniform(0.75, 0.85) * self.h
        for k in range(4):
            cx = (0.15 + 0.2 * k) * self.w
            poly = ellipse(cx, y, self.w * 0.03, self.h * 0.08)
            draw.polygon(poly, fill=1)
            paint.polygon(poly, fill=colour("person", self.rng))
        mask = np.array(layer, dtype=np.uint8)
        ys, xs = np.nonzero(mask)
        rle = rle_compressed(mask) if compressed else rle_uncompressed(mask)
        bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        return self.ann(image_id, "person", rle, mask.sum(), bbox, crowd=1)


def _shoelace(poly: list[tuple[float, float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=False))) / 2


def generate(out: str | Path, images: int = 120, width: int = 160, height: int = 120, seed: int = 0) -> dict[str, Path]:
    """Write the dataset under `out`; returns {split: annotation file}. Same seed, same bytes."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    writer = _Writer(out, width, height, rng)
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"} for name, (cid, _) in CATEGORIES.items()]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    n_train = round(images * SPLITS["train"])
    files = {}
    next_id = 1
    for split, count in (("train", n_train), ("val", images - n_train)):
        (out / split).mkdir(exist_ok=True)
        infos, anns = [], []
        for _ in range(count):
            info, image_anns = writer.image(next_id, split)
            infos.append(info)
            anns.extend(image_anns)
            next_id += 1
        doc = {
            "info": {"description": f"flowops synthetic COCO-format data (seed {seed})"},
            "images": infos,
            "annotations": anns,
            "categories": categories,
        }
        path = out / "annotations" / f"instances_{split}.json"
        path.write_text(json.dumps(doc))
        files[split] = path
    return files
