"""The built-in demo dataset: a small, deterministic, realistic-looking detection set, generated on
first use (never committed as images) so a newcomer can run every step without bringing data.

Each image is a textured background (smooth noise, wood-like stripes, tiles, gradients, sensor
noise) with a few shaded objects of several classes (ball, block, cone, star) at scales from tiny to
half the image, rotated, in random colours, with soft shadows and partial occlusion. Boxes are the
tight boxes of the *visible* pixels (COCO's convention); a new object is only placed where it leaves
every earlier one at least half visible, so no box names a hidden object. The output is PaddleX's
COCO layout: annotations/instance_train.json, annotations/instance_val.json, images/*.jpg
(`file_name` is relative to images/). The same seed gives byte-identical files.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..fileio import write_json

CLASSES = ("ball", "block", "cone", "star")
DEMO_NAME = "demo"
MIN_VISIBLE = 0.5  # fraction of an earlier object that must stay visible when a new one is placed


def generate(out_dir: str | os.PathLike, num_train: int = 120, num_val: int = 30, image_size: int = 320,
             seed: int = 0, num_classes: int = 4, max_objects: int = 6,
             empty_every: int = 40) -> Path:
    """Write the demo set to `out_dir` (created; must not hold another dataset) and return it.

    `image_size` is the longer side; shorter sides vary between 75 % and 100 % of it. Every
    `empty_every`-th image has no object (real sets have some; the check counts them as warnings).
    `num_classes` (1..4) takes the first names of CLASSES; category ids are 1..num_classes.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be 1..{len(CLASSES)}, got {num_classes}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": CLASSES[i], "supercategory": "object"} for i in range(num_classes)]
    for split, count, offset in (("train", num_train, 0), ("val", num_val, 1_000_003)):
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, offset + i])
            empty = empty_every > 0 and i % empty_every == empty_every - 1
            img, objects = _render(rng, image_size, num_classes, 0 if empty else max_objects)
            file_name = f"{split}_{i:05d}.jpg"
            img.save(out / "images" / file_name, quality=90)
            image_id = i + 1
            images.append({"id": image_id, "file_name": file_name, "width": img.width, "height": img.height})
            for cls, box, area in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                    "bbox": box, "area": area, "iscrowd": 0})
        write_json(out / "annotations" / f"instance_{split}.json",
                   {"info": {"description": "toolbox demo dataset", "seed": seed},
                    "images": images, "annotations": annotations, "categories": categories}, indent=None)
    return out


def ensure_demo_dataset(workspace=None, name: str = DEMO_NAME, **generate_kwargs) -> str:
    """Make sure the workspace holds the demo dataset, imported and checked; return its name.

    Generates into a temporary folder and imports it with `check` (which copies/links the images
    into datasets/<name>/ and writes the report), so the demo goes through the same path as user data.
    """
    from ..workspace import Workspace
    from .api import check

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    report_path = ws.datasets / name / "check_dataset_result.json"
    if report_path.is_file():
        import json

        try:
            if json.loads(report_path.read_text(encoding="utf-8")).get("check_pass"):
                return name
        except (OSError, ValueError):
            pass
    ws.ensure()
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=ws.root))
    try:
        src = generate(tmp / name, **generate_kwargs)
        check(src, name=name, workspace=ws, overwrite=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return name


# --------------------------------------------------------------------------- rendering
def _render(rng: np.random.Generator, size: int, num_classes: int, max_objects: int):
    """One image and its objects [(class index, [x, y, w, h], visible area)]."""
    w = size
    h = int(round(size * rng.uniform(0.75, 1.0)))
    if rng.random() < 0.3:
        w, h = h, w
    canvas = _background(rng, w, h)
    owner = np.full((h, w), -1, np.int16)  # which object a pixel shows, -1 = background
    areas: list[int] = []
    classes: list[int] = []
    n = int(rng.integers(1, max_objects + 1)) if max_objects > 0 else 0
    for _ in range(n):
        for _attempt in range(12):
            cls = int(rng.integers(num_classes))
            mask, shade = _shape(rng, cls, w, h)
            if not mask.any():
                continue
            if all((owner[~mask] == k).sum() >= MIN_VISIBLE * areas[k] for k in range(len(areas))):
                break
        else:
            continue
        _shadow(canvas, mask, rng)
        colour = _colour(rng)
        texture = 1.0 + rng.normal(0, 0.04, (h, w, 1)).astype(np.float32)
        obj = np.clip(colour[None, None, :] * shade[..., None] * texture, 0, 255)
        canvas[mask] = obj[mask]
        owner[mask] = len(areas)
        areas.append(int(mask.sum()))
        classes.append(cls)
    canvas += rng.normal(0, rng.uniform(1.5, 5.0), canvas.shape).astype(np.float32)  # sensor noise
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    objects = []
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(owner == k)
        if len(xs) < 4:
            continue
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        objects.append((cls, [x1, y1, x2 - x1, y2 - y1], int(len(xs))))
    return img, objects


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically."""
    gw, gh = max(2, cells), max(2, int(round(cells * h / w)))
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((w, h), Image.BICUBIC), np.float32) / 255.0


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A float32 HxWx3 background of one of several textures, in muted colours."""
    base = rng.uniform(60, 200, 3).astype(np.float32)
    tint = rng.uniform(-50, 50, 3).astype(np.float32)
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # cloudy: two octaves of smooth noise
        t = 0.65 * _smooth_noise(rng, w, h, 4) + 0.35 * _smooth_noise(rng, w, h, 16)
    elif kind == 1:  # wood-like stripes bent by noise
        angle = rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        t = 0.5 + 0.5 * np.sin(u / rng.uniform(3, 9) + 6 * _smooth_noise(rng, w, h, 3))
    elif kind == 2:  # tiles with grout and per-tile shade
        step = int(rng.integers(24, 64))
        tiles = rng.random(((h // step) + 2, (w // step) + 2)).astype(np.float32)
        t = 0.6 + 0.3 * tiles[(yy // step).astype(int), (xx // step).astype(int)]
        t[(yy % step < 2) | (xx % step < 2)] = 0.2
        t = t + 0.15 * _smooth_noise(rng, w, h, 12)
    else:  # lit gradient with fine grain
        gx, gy = rng.uniform(-1, 1, 2)
        t = 0.5 + 0.35 * ((xx / w - 0.5) * gx + (yy / h - 0.5) * gy) + 0.1 * _smooth_noise(rng, w, h, 32)
    t = np.clip(t, 0, 1)[..., None]
    return np.clip(base[None, None, :] + tint[None, None, :] * (2 * t - 1), 0, 255).astype(np.float32)


def _colour(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    return np.array([r, g, b], np.float32) * 255


def _shape(rng: np.random.Generator, cls: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A boolean mask of one object of class `cls` and its shading (HxW float, ~0.35..1.15)."""
    side = min(w, h)
    s = float(np.exp(rng.uniform(math.log(0.07), math.log(0.5)))) * side  # scale variation
    cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
    rot = rng.uniform(0, 2 * math.pi)
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if cls == 0:  # ball: ellipse, radial highlight
        rx, ry = s / 2, s / 2 * rng.uniform(0.85, 1.0)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        hx, hy = cx - rx * 0.35, cy - ry * 0.35
        d = np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / max(rx, 1)
        shade = 1.15 - 0.6 * np.clip(d, 0, 1.4)
    elif cls == 1:  # block: rotated rectangle, linear light
        bw, bh = s, s * rng.uniform(0.45, 1.0)
        pts = _rotated([(-bw / 2, -bh / 2), (bw / 2, -bh / 2), (bw / 2, bh / 2), (-bw / 2, bh / 2)], rot, cx, cy)
        draw.polygon(pts, fill=255)
        shade = 0.75 + 0.35 * np.clip(((xx - cx) * math.cos(rot) + (yy - cy) * math.sin(rot)) / max(s, 1), -1, 1)
    elif cls == 2:  # cone: isoceles triangle with a light side
        tw, th = s * rng.uniform(0.55, 0.8), s
        tilt = rng.uniform(-0.5, 0.5)
        pts = _rotated([(0, -th / 2), (tw / 2, th / 2), (-tw / 2, th / 2)], tilt, cx, cy)
        draw.polygon(pts, fill=255)
        shade = 0.8 + 0.3 * np.clip((cx - xx) / max(tw, 1), -1, 1)
    else:  # star: five points, shaded by distance from the centre
        outer, inner = s / 2, s / 2 * rng.uniform(0.38, 0.5)
        pts = [(r * math.cos(rot + k * math.pi / 5), r * math.sin(rot + k * math.pi / 5))
               for k, r in zip(range(10), [outer, inner] * 5)]
        draw.polygon([(cx + x, cy + y) for x, y in pts], fill=255)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(outer, 1)
        shade = 1.1 - 0.45 * np.clip(d, 0, 1)
    mask = np.asarray(layer) > 127
    return mask, shade.astype(np.float32)


def _rotated(points, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _shadow(canvas: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Darken the background under a shifted, blurred copy of `mask` (not part of any box)."""
    dx, dy = (int(v) for v in rng.integers(2, 7, 2))
    shifted = np.zeros_like(mask)
    shifted[dy:, dx:] = mask[:-dy or None, :-dx or None]
    soft = Image.fromarray(shifted.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(3))
    alpha = np.asarray(soft, np.float32)[..., None] / 255.0 * 0.45
    canvas *= 1.0 - alpha
