"""YOLO (Ultralytics / Roboflow YOLO export): data.yaml with `names` and train/val[/test] paths, images
in .../images/ and one label file per image in the matching .../labels/ folder, lines
"class cx cy w h" normalised to [0, 1].

Class order is `names` (list, or dict index -> name); category ids are 1..N in that order. A split path
may be a folder or a .txt list of images, relative to `path:` or to the YAML's folder (Roboflow writes
"../train/images", which is tried relative to the YAML's folder as well). Lines with more than five
numbers are segmentation polygons: their box is used, and this is reported.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ..source import Issue, Source, Split, common_parent, relative

NAME = "yolo"
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_KEYS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
EXPECTED = "data.yaml (names, train, val) with images/ and labels/ folders"


def find_yaml(root: Path) -> Path | None:
    for name in YAML_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def detect(root: Path) -> bool:
    return find_yaml(root) is not None


def _resolve(root: Path, base: Path, value: str) -> Path | None:
    p = Path(value)
    candidates = [p] if p.is_absolute() else [base / p, root / p]
    if not p.is_absolute():
        stripped = Path(*[part for part in p.parts if part not in ("..", ".")]) if p.parts else p
        candidates.append(root / stripped)
    for c in candidates:
        if c.exists():
            return c
    return None


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read(root: Path) -> Source:
    src = Source(NAME, root)
    yml = find_yaml(root)
    try:
        cfg = yaml.safe_load(yml.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, OSError) as e:
        src.issues.append(Issue("yaml_invalid", yml.name, None, f"cannot read {yml.name}: {e}"))
        return src
    if not isinstance(cfg, dict) or "names" not in cfg:
        src.issues.append(Issue("schema", yml.name, None, f"{yml.name} needs 'names' (the class list) and train/val paths"))
        return src
    names = cfg["names"]
    if isinstance(names, dict):
        try:
            names = [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            src.issues.append(Issue("schema", yml.name, None, "'names' as a mapping must have integer keys 0..N-1"))
            return src
    if not isinstance(names, list) or not names:
        src.issues.append(Issue("schema", yml.name, None, "'names' must be a non-empty list of class names"))
        return src
    names = [str(n) for n in names]
    if isinstance(cfg.get("nc"), int) and cfg["nc"] != len(names):
        src.issues.append(Issue("schema", yml.name, None, f"nc = {cfg['nc']} but 'names' lists {len(names)} classes"))
    base = root / cfg["path"] if isinstance(cfg.get("path"), str) and not Path(cfg["path"]).is_absolute() else root
    if isinstance(cfg.get("path"), str) and not base.exists():
        base = root
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    per_split: dict[str, list[Path]] = {}
    for split, keys in SPLIT_KEYS.items():
        value = next((cfg[k] for k in keys if cfg.get(k)), None)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        images: list[Path] = []
        for v in values:
            where = _resolve(root, base, str(v))
            if where is None:
                src.issues.append(Issue("split_missing", yml.name, None, f"the {split} path '{v}' does not exist"))
            elif where.is_dir():
                images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
            else:  # a .txt list of image paths
                for line in where.read_text(encoding="utf-8-sig").splitlines():
                    if line.strip():
                        images.append(_resolve(root, where.parent, line.strip()) or (where.parent / line.strip()))
        per_split[split] = images
    from ..images import probe_file

    common = common_parent([p for ps in per_split.values() for p in ps]) or root
    for split, images_list in per_split.items():
        images, anns, srcs, files = [], [], [], []
        for image_path in images_list:
            label = _label_path(image_path)
            rel_label = relative(label, root)
            info = probe_file(image_path)
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": relative(image_path, common),
                           "width": info.width or None, "height": info.height or None})
            srcs.append(image_path)
            files.append(rel_label if label.is_file() else relative(image_path, root))
            if info.status != "ok" or not label.is_file():
                continue  # the checker reports the image; no label file = an image without boxes
            W, H = info.width, info.height
            for n, line in enumerate(label.read_text(encoding="utf-8-sig").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    cls = int(parts[0])
                    vals = [float(v) for v in parts[1:]]
                except ValueError:
                    src.issues.append(Issue("label_invalid", rel_label, None, f"line {n}: expected 'class cx cy w h' "
                                            f"numbers, found {line.strip()!r:.80}"))
                    continue
                if len(vals) == 4:
                    cx, cy, w, h = vals
                    x1, y1 = cx - w / 2, cy - h / 2
                elif len(vals) >= 6 and len(vals) % 2 == 0:
                    xs, ys = vals[0::2], vals[1::2]
                    x1, y1, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
                    src.issues.append(Issue("polygon_as_box", rel_label, None, f"line {n} is a polygon of "
                                            f"{len(xs)} points: its bounding box is used", "warning"))
                else:
                    src.issues.append(Issue("label_invalid", rel_label, None, f"line {n}: expected 'class cx cy w h', "
                                            f"found {len(vals) + 1} values"))
                    continue
                if not 0 <= cls < len(names):
                    src.issues.append(Issue("category_unknown", rel_label, None, f"line {n}: class {cls} is not in "
                                            f"'names' of {yml.name} (0..{len(names) - 1})"))
                    continue
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cls + 1,
                             "bbox": [x1 * W, y1 * H, w * W, h * H], "area": max(0.0, w * W) * max(0.0, h * H),
                             "iscrowd": 0})
        coco = {"images": images, "annotations": anns, "categories": categories}
        src.splits[split] = Split(split, coco, yml.name, None, srcs, files, "coco")
    return src
