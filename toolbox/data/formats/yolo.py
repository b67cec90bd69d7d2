"""YOLO (Ultralytics / Roboflow YOLO export): data.yaml with `names` and train/val[/test] paths, images
in .../images/ and one label file per image in the matching .../labels/ folder, lines
"class cx cy w h" normalised to [0, 1].

Class order is `names` (a list, or a mapping {0: name, ...}); category ids are 1..N in that order; an
`nc` that disagrees is reported. A data.yaml often comes from another machine, so each split path (a
folder or a .txt list of images) is looked for in this order: as written (relative to `path:` when
given, else to the yaml's folder); the same without a leading '../' (Roboflow writes '../train/images');
then the split's folder beside the yaml in either common layout (Roboflow's train/ valid/ test/, each
with images/ and labels/, or Ultralytics' images/{train,val,test} with labels/{train,val,test}). Each
replacement is one warning naming the path and what replaced it; only nothing found is an error.
Lines with more than five numbers are segmentation polygons: their box is used, and this is reported.
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


def _strip_up(p: Path) -> Path:
    """`p` without its leading `..` (and `.`) parts: Roboflow writes '../train/images' for 'train/images'."""
    parts = list(p.parts)
    while parts and parts[0] in ("..", "."):
        parts.pop(0)
    return Path(*parts) if parts else Path(".")


def _beside_yaml(root: Path, split: str) -> list[Path]:
    """The split's folder in the two common layouts beside data.yaml: Roboflow's train/ valid/ test/
    (each with images/ and labels/) and Ultralytics' images/{train,val,test} (with labels/...)."""
    names = SPLIT_KEYS[split]
    return [root / n / "images" for n in names] + [root / "images" / n for n in names]


def _resolve_split(root: Path, base: Path, value: str, split: str) -> tuple[Path | None, str]:
    """Where a split path of data.yaml really is, in the documented order; returns (path, how found):
    how is "" when found as written, else a phrase naming the replacement (for the warning)."""
    p = Path(value)
    written = p if p.is_absolute() else base / p
    if written.exists():
        return written, ""
    candidates: list[tuple[Path, str]] = []
    if not p.is_absolute():
        if _strip_up(p) != p:
            candidates.append((base / _strip_up(p), "without its leading '../'"))
        if base != root:  # `path:` given: the same relative to the yaml's folder
            candidates += [(root / p, "relative to the yaml's folder"),
                           (root / _strip_up(p), "relative to the yaml's folder")]
    candidates += [(c, "beside the yaml") for c in _beside_yaml(root, split)]
    for c, how in candidates:
        if c.is_dir() or c.is_file() and c.suffix.lower() == ".txt":
            return c, how
    return None, ""


def _resolve_listed(root: Path, base: Path, value: str) -> Path | None:
    """An image named in a .txt list: relative to the list's folder, else the dataset's, else without '../'."""
    p = Path(value)
    candidates = [p] if p.is_absolute() else [base / p, root / p, root / _strip_up(p)]
    return next((c for c in candidates if c.exists()), None)


def _names(value) -> tuple[list[str], str]:
    """The class names from `names`: a list, or a mapping {0: name, 1: name, ...} (Ultralytics writes
    both); returns (names, "") or ([], what is wrong)."""
    if isinstance(value, dict):
        try:
            by_index = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            return [], f"is a mapping whose keys are not all class numbers ({list(value)[:5]!r})"
        if sorted(by_index) != list(range(len(by_index))):
            return [], (f"maps class numbers {sorted(by_index)[:10]}, which are not 0..{len(by_index) - 1} "
                        f"without gaps: the label files' class numbers could not be matched to names")
        value = [by_index[i] for i in range(len(by_index))]
    if not isinstance(value, list) or not value:
        return [], "must be a non-empty list of class names or a mapping {0: name, 1: name, ...}"
    for i, n in enumerate(value):
        if n is None or not str(n).strip():
            return [], f"has no name for class {i}"
    return [str(n).strip() for n in value], ""


def _base(root: Path, path_key) -> Path:
    """What split paths are relative to: `path:` (itself relative to the yaml's folder) when given."""
    if isinstance(path_key, str) and path_key.strip():
        p = Path(path_key.strip())
        return p if p.is_absolute() else root / p
    return root


def _where(root: Path, base: Path) -> str:
    return "the yaml's folder" if base == root else f"path: '{relative(base, root)}'"


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
    names, problem = _names(cfg["names"])
    if problem:
        src.issues.append(Issue("schema", yml.name, None, f"'names' in {yml.name} {problem}"))
        return src
    nc = cfg.get("nc")
    if nc is not None and (type(nc) is not int or nc != len(names)):
        src.issues.append(Issue("nc_mismatch", yml.name, None, f"nc = {nc!r} but 'names' lists {len(names)} "
                                f"classes ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}): the names "
                                f"are used; correct nc or the names", "warning"))
    base = _base(root, cfg.get("path"))
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    per_split: dict[str, list[Path]] = {}
    for split, keys in SPLIT_KEYS.items():
        value = next((cfg[k] for k in keys if cfg.get(k)), None)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        images: list[Path] = []
        for v in values:
            where, how = _resolve_split(root, base, str(v), split)
            if where is None:
                looked = ", ".join(relative(c, root) for c in _beside_yaml(root, split))
                src.issues.append(Issue("split_missing", yml.name, None, f"the {split} path '{v}' does not exist "
                                        f"(relative to {_where(root, base)}), and no {split} folder was found beside "
                                        f"{yml.name} either (looked for {looked})"))
                continue
            if how:
                src.issues.append(Issue("split_path_replaced", yml.name, None, f"the {split} path '{v}' does not "
                                        f"exist here; using '{relative(where, root)}' ({how}) instead", "warning"))
            if where.is_dir():
                images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
            else:  # a .txt list of image paths
                for line in where.read_text(encoding="utf-8-sig").splitlines():
                    if line.strip():
                        images.append(_resolve_listed(root, where.parent, line.strip()) or (where.parent / line.strip()))
        images = list(dict.fromkeys(images))  # two entries replaced by the same folder: each image once
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
