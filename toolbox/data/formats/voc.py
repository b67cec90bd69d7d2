"""Pascal VOC, in both layouts:

- classic: JPEGImages/, Annotations/*.xml, ImageSets/Main/{train,val,test}.txt (ids, one a line);
  without ImageSets every annotation goes to train (then `split` makes a val);
- PaddleX: train_anno_list.txt / val_anno_list.txt (/ test_anno_list.txt), each line
  "<image path> <xml path>" relative to the dataset root, and label_list.txt.

Class order: a list file (labels.txt, label_list.txt, classes.txt) when present, else the sorted
names; category ids are 1..N in that order. Boxes convert as x = xmin, w = xmax - xmin (the corners
as written), so a box with xmin = xmax is reported as zero width, not silently widened.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..source import Issue, Source, Split, common_parent, relative

NAME = "voc"
LIST_FILES = ("labels.txt", "label_list.txt", "classes.txt")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".JPG", ".JPEG", ".PNG")
EXPECTED = ("JPEGImages/ + Annotations/*.xml (+ ImageSets/Main/train.txt, val.txt), or PaddleX's "
            "train_anno_list.txt + val_anno_list.txt")


def detect(root: Path) -> bool:
    if (root / "train_anno_list.txt").is_file() or (root / "val_anno_list.txt").is_file():
        return True
    ann = root / "Annotations"
    return ann.is_dir() and any(ann.glob("*.xml"))


def read_label_list(root: Path) -> tuple[list[str] | None, str | None]:
    for name in LIST_FILES:
        path = root / name
        if path.is_file():
            names = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            return names, name
    return None, None


def _split_lists(root: Path, issues: list[Issue]) -> dict[str, list[tuple[Path | None, Path, str]]]:
    """split -> [(image path or None, xml path, where it was listed)]."""
    out: dict[str, list[tuple[Path | None, Path, str]]] = {}
    if (root / "train_anno_list.txt").is_file() or (root / "val_anno_list.txt").is_file():
        for split in ("train", "val", "test"):
            lst = root / f"{split}_anno_list.txt"
            if not lst.is_file():
                continue
            rows = []
            for n, line in enumerate(lst.read_text(encoding="utf-8-sig").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    issues.append(Issue("schema", lst.name, None, f"line {n} of {lst.name} must be '<image> <xml>', "
                                        f"found {line.strip()!r:.100}"))
                    continue
                rows.append((root / parts[0], root / parts[1], f"{lst.name}:{n}"))
            out[split] = rows
        return out
    ann_dir, sets = root / "Annotations", root / "ImageSets" / "Main"
    if sets.is_dir() and any((sets / f"{s}.txt").is_file() for s in ("train", "val", "trainval")):
        for split in ("train", "val", "test"):
            lst = sets / f"{split}.txt"
            if split == "train" and not lst.is_file():
                lst = sets / "trainval.txt"
            if not lst.is_file():
                continue
            ids = [ln.split()[0] for ln in lst.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            out[split] = [(None, ann_dir / f"{i}.xml", relative(lst, root)) for i in ids]
    else:
        out["train"] = [(None, p, "Annotations/") for p in sorted(ann_dir.glob("*.xml"))]
    return out


def _find_image(root: Path, xml_path: Path, filename: str | None) -> Path | None:
    folder = root / "JPEGImages"
    candidates = []
    if filename:
        candidates += [folder / filename, xml_path.parent / filename]
    for ext in IMAGE_EXTS:
        candidates.append(folder / (xml_path.stem + ext))
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0] if candidates else None


def _num(node, tag: str) -> float | None:
    el = node.find(tag)
    if el is None or el.text is None:
        return None
    try:
        return float(el.text.strip())
    except ValueError:
        return None


def read(root: Path) -> Source:
    src = Source(NAME, root)
    names, list_file = read_label_list(root)
    parsed: dict[str, list] = {}
    seen_names: set[str] = set()
    for split, rows in _split_lists(root, src.issues).items():
        items = []
        for image_path, xml_path, listed_in in rows:
            rel_xml = relative(xml_path, root)
            if not xml_path.is_file():
                src.issues.append(Issue("annotation_missing", listed_in, None,
                                        f"{rel_xml} is listed but does not exist"))
                continue
            try:
                tree = ET.parse(xml_path).getroot()
            except (ET.ParseError, OSError) as e:
                src.issues.append(Issue("xml_invalid", rel_xml, None, f"cannot parse the XML: {e}"))
                continue
            filename = (tree.findtext("filename") or "").strip() or None
            if image_path is None:
                image_path = _find_image(root, xml_path, filename)
            width, height = _num(tree, "size/width"), _num(tree, "size/height")
            objects = []
            for k, obj in enumerate(tree.findall("object")):
                name = (obj.findtext("name") or "").strip()
                box = obj.find("bndbox")
                coords = [_num(box, t) if box is not None else None for t in ("xmin", "ymin", "xmax", "ymax")]
                if not name or any(c is None for c in coords):
                    src.issues.append(Issue("schema", rel_xml, None, f"object #{k + 1} needs a <name> and a <bndbox> "
                                            f"with numeric xmin, ymin, xmax, ymax"))
                    continue
                seen_names.add(name)
                objects.append((name, coords, obj.findtext("difficult")))
            items.append((image_path, rel_xml, width, height, objects))
        parsed[split] = items
    if names is None:
        names = sorted(seen_names)
    cat_of = {n: i + 1 for i, n in enumerate(names)}
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    image_paths = [it[0] for items in parsed.values() for it in items if it[0] is not None]
    base = common_parent(image_paths) or root
    from ..images import probe_file

    for split, items in parsed.items():
        images, anns, srcs, files = [], [], [], []
        for image_path, rel_xml, width, height, objects in items:
            image_id = len(images) + 1
            if not width or not height:  # some tools write 0: take the file's size
                info = probe_file(image_path)
                if info.status == "ok":
                    width, height = info.width, info.height
            images.append({"id": image_id, "file_name": relative(image_path, base) if image_path else rel_xml,
                           "width": width, "height": height})
            srcs.append(image_path)
            files.append(rel_xml)
            for name, (x1, y1, x2, y2), difficult in objects:
                if name not in cat_of:
                    src.issues.append(Issue("category_unknown", rel_xml, None, f"object '{name}' is not in "
                                            f"{list_file} ({', '.join(names[:20])}); add it there or fix the name"))
                    continue
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_of[name],
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": max(0.0, x2 - x1) * max(0.0, y2 - y1),
                             "iscrowd": 0})
        coco = {"images": images, "annotations": anns, "categories": categories}
        src.splits[split] = Split(split, coco, f"{split} list", None, srcs, files, "xyxy")
    return src
