"""LabelMe: one JSON per image ({"shapes": [{"label", "points", "shape_type"}], "imagePath",
"imageWidth", "imageHeight"}), the image beside it (or where imagePath says).

Rectangles become boxes (two corners, in any order). Any other shape (polygon, circle, line, point,
mask) is reported as a warning naming the file and label, never dropped silently: draw it as a
rectangle in LabelMe to use it. Splits: train/, val/ (or valid/), test/ sub-folders when present,
else everything is train (then `split` makes a val). Class order: a list file (labels.txt,
label_list.txt, classes.txt) when present, else the sorted labels; category ids 1..N.
A JSON without its image file (no imagePath, or the file is not there) but with the image embedded in
`imageData` (base64, as LabelMe saves by default) has that image decoded and imported, named as if it
lay beside its JSON.
"""
from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..source import Issue, Source, Split, common_parent, load_json, relative
from .voc import read_label_list

NAME = "labelme"
FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
EXPECTED = "LabelMe JSON files (with 'shapes' and 'imagePath'), optionally in train/ and val/ folders"
SKIP = {"annotations", "check"}
EMBEDDED_EXTS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


def _is_labelme(path: Path) -> bool:
    """LabelMe writes "shapes" near the top (imageData, which can be huge, comes last)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return b'"shapes"' in head


def _jsons(folder: Path) -> list[Path]:
    """The JSON files under `folder`, hidden ones skipped (judged below `folder`: an import's own
    temporary folder is hidden too)."""
    return sorted(p for p in folder.rglob("*.json")
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and not p.name.startswith("_"))


def detect(root: Path) -> bool:
    for p in _jsons(root)[:5]:
        if _is_labelme(p):
            return True
    return False


def _embedded_image(doc: dict, path: Path, rel: str, embedded_dir: Path | None,
                    src: Source) -> tuple[Path, Path] | None:
    """Decode the image LabelMe embedded in `imageData` (base64) into `embedded_dir`; returns (the path it
    is named by: beside its JSON, with the extension of its real format; the file written), or None
    after reporting why it cannot be used."""
    try:
        text = "".join(doc["imageData"].split())
        if text.startswith("data:") and "," in text:  # a data URI ("data:image/png;base64,...")
            text = text.split(",", 1)[1]
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").upper()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        src.issues.append(Issue("image_unreadable", rel, None, f"no image file for {rel} and the image embedded "
                                f"in its imageData cannot be decoded ({type(e).__name__}: {e})"[:300]))
        return None
    named = path.with_suffix(EMBEDDED_EXTS.get(fmt, "." + fmt.lower() if fmt else ".img"))
    if embedded_dir is None:  # nowhere to write it (not an import): read it where it will never be
        return named, named
    written = embedded_dir / Path(rel).with_suffix(named.suffix)
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_bytes(data)
    if doc.get("imagePath"):
        src.issues.append(Issue("image_embedded", rel, None, f"the image '{doc['imagePath']}' named by imagePath is "
                                f"not there: the image embedded in imageData is used instead", "warning"))
    return named, written


def read(root: Path, embedded_dir: Path | None = None) -> Source:
    """`embedded_dir`: where images that exist only inside their JSON (imageData) are decoded to."""
    src = Source(NAME, root)
    groups: dict[str, list[Path]] = {}
    for split, names in FOLDERS.items():
        for d in names:
            if (root / d).is_dir():
                groups[split] = _jsons(root / d)
                break
    if not groups:
        groups["train"] = _jsons(root)
    label_list, list_file = read_label_list(root)
    parsed: dict[str, list] = {}
    labels_seen: set[str] = set()
    for split, files in groups.items():
        items = []
        for path in files:
            rel = relative(path, root)
            try:
                doc = load_json(path)
            except (ValueError, OSError) as e:
                src.issues.append(Issue("json_invalid", rel, None, f"cannot read {rel}: {e}"))
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
                continue  # not a LabelMe file (e.g. some other JSON in the folder)
            image_path = path.parent / str(doc.get("imagePath") or (path.stem + ".jpg")).replace("\\", "/")
            if not image_path.is_file():
                for ext in (".jpg", ".jpeg", ".png", ".bmp"):
                    if (path.with_suffix(ext)).is_file():
                        image_path = path.with_suffix(ext)
                        break
            read_from = image_path
            if not image_path.is_file() and isinstance(doc.get("imageData"), str) and doc["imageData"].strip():
                embedded = _embedded_image(doc, path, rel, embedded_dir, src)
                if embedded is None:
                    continue  # reported: the embedded image cannot be decoded
                image_path, read_from = embedded
            boxes = []
            for k, shape in enumerate(doc["shapes"]):
                label = str(shape.get("label", "")).strip() if isinstance(shape, dict) else ""
                kind = shape.get("shape_type") or "polygon" if isinstance(shape, dict) else "?"
                points = shape.get("points") if isinstance(shape, dict) else None
                if kind != "rectangle":
                    src.issues.append(Issue("shape_not_box", rel, None, f"shape #{k + 1} '{label}' is a {kind}, not a "
                                            f"rectangle: not used (redraw it as a rectangle to train on it)", "warning"))
                    continue
                try:
                    (xa, ya), (xb, yb) = [(float(p[0]), float(p[1])) for p in points]
                except (TypeError, ValueError, IndexError):
                    src.issues.append(Issue("schema", rel, None, f"rectangle #{k + 1} '{label}' needs two corner "
                                            f"points, found {points!r:.80}"))
                    continue
                if not label:
                    src.issues.append(Issue("schema", rel, None, f"rectangle #{k + 1} has no label"))
                    continue
                labels_seen.add(label)
                boxes.append((label, min(xa, xb), min(ya, yb), abs(xb - xa), abs(yb - ya)))
            items.append((image_path, read_from, rel, doc.get("imageWidth"), doc.get("imageHeight"), boxes))
        parsed[split] = items
    names = label_list if label_list is not None else sorted(labels_seen)
    cat_of = {n: i + 1 for i, n in enumerate(names)}
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    base = common_parent([it[0] for items in parsed.values() for it in items]) or root
    for split, items in parsed.items():
        images, anns, srcs, files = [], [], [], []
        for image_path, read_from, rel, width, height, boxes in items:
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": relative(image_path, base), "width": width, "height": height})
            srcs.append(read_from)
            files.append(rel)
            for label, x, y, w, h in boxes:
                if label not in cat_of:
                    src.issues.append(Issue("category_unknown", rel, None, f"label '{label}' is not in {list_file} "
                                            f"({', '.join(names[:20])}); add it there or fix the label"))
                    continue
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_of[label],
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        src.splits[split] = Split(split, {"images": images, "annotations": anns, "categories": categories},
                                  "LabelMe files", None, srcs, files, "coco")
    return src
