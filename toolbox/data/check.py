"""Checking a dataset, all of it: schema, ids, categories, boxes and image files.

The annotation checks work on whole columns (numpy / pandas) so a million boxes cost about what
loading the JSON costs; Python only formats the messages of the rows that have a problem. Every
problem becomes an `Issue` naming the user's file and the annotation id.

Image files are looked at one by one (that is I/O): each must exist, decode its header, and have the
size written in the annotations once its EXIF orientation is applied. `toolbox.data.images` does the
probing (and, on import, the upright copy into the workspace).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from .classes import class_mapping
from .empty_split import RESPLIT, empty_hint
from .source import SPLITS, Issue, Source, Split

MAX_LISTED = 1000   # issues listed per code and split; the rest are counted in one summary line
BOX_TOLERANCE = 0.5  # px a box may pass the image border (float rounding of exporters)
SMALL, MEDIUM = 32 ** 2, 96 ** 2  # COCO's area bounds

ImageProbe = Callable[[Split, int], "ImageInfo"]


@dataclass
class ImageInfo:
    """What the image pass learnt about one image file (sizes are after EXIF orientation)."""

    status: str  # ok | missing | unreadable | skipped
    width: int = 0
    height: int = 0
    raw_width: int = 0
    raw_height: int = 0
    orientation: int = 1
    file: str = ""    # the user's image file, as shown in problems
    reason: str = ""  # why it is unreadable


@dataclass
class SplitStats:
    images: int = 0
    boxes_per_class: dict[int, int] = field(default_factory=dict)  # category id -> valid boxes
    box_sizes: dict[str, int] = field(default_factory=lambda: {"small": 0, "medium": 0, "large": 0})
    images_without_boxes: int = 0


@dataclass
class CheckResult:
    issues: list[Issue]
    stats: dict[str, SplitStats]
    cat_ids: list[int]
    class_names: list[str]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity != "error"]


# --------------------------------------------------------------------------- columns
def _col(records: list, key: str) -> list:
    try:
        return [r.get(key) for r in records]
    except AttributeError:
        return [r.get(key) if isinstance(r, dict) else None for r in records]


def _ints(values: list) -> tuple[np.ndarray, np.ndarray]:
    """int64 array (-1 where invalid) and a mask of entries that are real integers."""
    n = len(values)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False), np.ones(n, bool)
    ok = np.fromiter((type(v) is int and -(2 ** 63) <= v < 2 ** 63 for v in values), bool, n)
    return np.fromiter((v if o else -1 for v, o in zip(values, ok)), np.int64, n), ok


def _is_num(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))


def _nums(values: list) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool)
    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "iuf":
        arr = arr.astype(np.float64, copy=False)
        return arr, np.isfinite(arr)
    ok = np.fromiter((_is_num(v) for v in values), bool, n)
    return np.fromiter((float(v) if o else np.nan for v, o in zip(values, ok)), np.float64, n), ok


def _boxes(values: list) -> tuple[np.ndarray, np.ndarray]:
    """N x 4 float boxes (NaN where invalid) and a mask of valid [x, y, w, h] lists of numbers."""
    n = len(values)
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0, bool)
    try:
        arr = np.asarray(values)
        if arr.shape == (n, 4) and arr.dtype.kind in "iuf":
            arr = arr.astype(np.float64, copy=False)
            return arr, np.isfinite(arr).all(axis=1)
    except ValueError:  # ragged
        pass
    ok = np.fromiter((isinstance(b, (list, tuple)) and len(b) == 4 and all(_is_num(v) for v in b)
                      for b in values), bool, n)
    arr = np.full((n, 4), np.nan)
    for i in np.flatnonzero(ok):
        arr[i] = values[i]
    return arr, ok


def safe_relative(name: str) -> bool:
    """A file_name that stays inside images/: relative, no '..', no drive or backslash tricks."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in name.replace("\\", "/").split("/")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


# --------------------------------------------------------------------------- the checker
class _Collector:
    """Collects every issue with where it sits (split, row, image or annotation); `listed` caps what
    the report shows, --fix uses them all."""

    def __init__(self) -> None:
        self.all: list[Issue] = []

    def add(self, issue: Issue, split: str = "", row: int | None = None, target: str | None = None) -> None:
        issue.split = split or issue.split
        issue.row = None if row is None else int(row)
        issue.target = target
        self.all.append(issue)

def listed(issues: list[Issue]) -> list[Issue]:
    """The issues to write: at most MAX_LISTED per (split, code, severity), then one summary line each."""
    counts: Counter = Counter()
    shown: list[Issue] = []
    for issue in issues:
        key = (issue.split or "", issue.code, issue.severity)
        counts[key] += 1
        if counts[key] <= MAX_LISTED:
            shown.append(issue)
    for (split, code, severity), n in counts.items():
        if n > MAX_LISTED:
            shown.append(Issue(code, None, None, f"... and {n - MAX_LISTED} more '{code}' "
                               f"{'errors' if severity == 'error' else 'warnings'} in {split or 'the dataset'} "
                               f"(only the first {MAX_LISTED} are listed)", severity))
    return shown


def check_source(source: Source, probe: ImageProbe | None = None) -> CheckResult:
    """Check every split of `source`; `probe(split, index)` inspects one image file (None: skip files)."""
    out = _Collector()
    for issue in source.issues:
        out.add(issue)
    splits = source.splits
    _check_split_presence(splits, out, source.format)
    categories = _check_categories(splits, out)
    stats = {}
    hint = empty_hint(splits, source.format)
    for name in SPLITS:
        if name in splits and not splits[name].broken and _schema_ok(splits[name], out):
            stats[name] = _check_split(splits[name], set(categories), probe, out, hint)
    _check_overlap(splits, stats, out)
    # class mapping from the category lists and the ids in use (counted above, no second pass over boxes)
    used = sorted({cid for st in stats.values() for cid in st.boxes_per_class})
    lists = [{"categories": s.coco.get("categories") if isinstance(s.coco.get("categories"), list) else []}
             for s in splits.values() if isinstance(s.coco, dict)]
    lists = [{"categories": [c for c in d["categories"] if isinstance(c, dict) and type(c.get("id")) is int]}
             for d in lists]
    cat_ids, names = class_mapping(lists + [{"annotations": [{"category_id": c} for c in used]}])
    return CheckResult(out.all, stats, cat_ids, names)


def _check_overlap(splits: dict[str, Split], stats: dict, out: _Collector) -> None:
    """The same image file in two splits inflates validation scores: warn, naming it."""
    seen: dict[str, str] = {}
    for name in SPLITS:
        if name not in stats:
            continue
        split = splits[name]
        images = split.coco["images"]
        if split.image_src is not None:
            keys = [str(p) if p is not None else None for p in split.image_src]
        else:
            base = f"{split.image_root}/"
            keys = [base + fn if isinstance(fn, str) else None for fn in _col(images, "file_name")]
        for i, key in enumerate(keys):
            if key is None:
                continue
            if key in seen and seen[key] != name:
                im = images[i]
                out.add(Issue("image_in_two_splits", im.get("file_name"), None,
                              f"image {im.get('file_name')} is in both {seen[key]} and {name}: scores on {name} "
                              f"will look better than they are", "warning"), name, i, "image")
            else:
                seen.setdefault(key, name)


def _check_split_presence(splits: dict[str, Split], out: _Collector, fmt: str | None = None) -> None:
    for name in ("train", "val"):
        if name not in splits:
            out.add(Issue("split_empty", None, None, f"there is no {name} split; "
                          f"{empty_hint(splits, fmt).replace('add some', 'add one', 1)}"))


def _schema_ok(split: Split, out: _Collector) -> bool:
    coco = split.coco
    if not isinstance(coco, dict):
        out.add(Issue("schema", split.json_file, None, f"the top level of {split.json_file} must be a JSON "
                      f"object with images, annotations and categories, not {type(coco).__name__}"))
        return False
    good = True
    for key in ("images", "annotations", "categories"):
        value = coco.get(key)
        if key == "annotations" and value is None and split.name == "test":
            coco["annotations"] = []
            continue
        if not isinstance(value, list):
            out.add(Issue("schema", split.json_file, None,
                          f"'{key}' in {split.json_file} must be a list, found "
                          f"{'nothing' if value is None else type(value).__name__}"))
            good = False
    return good


def _check_categories(splits: dict[str, Split], out: _Collector) -> dict[int, str]:
    """Validate each split's categories and their agreement; return the union id -> name."""
    union: dict[int, str] = {}
    seen: dict[str, dict[int, str]] = {}
    for split in splits.values():
        cats = split.coco.get("categories") if isinstance(split.coco, dict) else None
        if not isinstance(cats, list):
            continue
        mine: dict[int, str] = {}
        for k, c in enumerate(cats):
            cid = c.get("id") if isinstance(c, dict) else None
            name = c.get("name") if isinstance(c, dict) else None
            if type(cid) is not int or not isinstance(name, str):
                out.add(Issue("schema", split.json_file, None,
                              f"category #{k} must have an integer 'id' and a string 'name', found {c!r:.120}"))
                continue
            if cid in mine:
                out.add(Issue("duplicate_category_id", split.json_file, None,
                              f"category id {cid} is listed twice ('{mine[cid]}' and '{name}')"))
                continue
            mine[cid] = name
        seen[split.name] = mine
        for cid, name in mine.items():
            union.setdefault(cid, name)
    names = list(seen)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            if seen[a] != seen[b] and seen[a] and seen[b]:
                diff = sorted(set(seen[a].items()) ^ set(seen[b].items()))[:5]
                out.add(Issue("category_mismatch", splits[b].json_file, None,
                              f"the categories of {b} differ from those of {a} ({splits[a].json_file}): "
                              f"{', '.join(f'id {i} {n!r}' for i, n in diff)}; every split must list the same "
                              f"categories with the same ids"))
    return union


def _check_split(split: Split, known_cats: set[int], probe: ImageProbe | None, out: _Collector,
                 hint_when_empty: str = RESPLIT) -> SplitStats:
    coco = split.coco
    images: list = coco["images"]
    anns: list = coco["annotations"]
    jf = split.json_file
    stats = SplitStats(images=len(images))
    if not images and not split.broken:
        hint = "add images to it, or leave it out (a test split is optional)" if split.name == "test" else hint_when_empty
        out.add(Issue("split_empty", jf, None, f"the {split.name} split has no images; {hint}"), split.name)

    # ---- images: ids, names, sizes
    img_ids, id_ok = _ints(_col(images, "id"))
    names = _col(images, "file_name")
    name_ok = np.fromiter((isinstance(n, str) and n != "" for n in names), bool, len(names))
    unsafe = np.fromiter((bool(ok) and not safe_relative(n) for n, ok in zip(names, name_ok)), bool, len(names))
    widths, w_ok = _nums(_col(images, "width"))
    heights, h_ok = _nums(_col(images, "height"))
    size_ok = w_ok & h_ok & (widths > 0) & (heights > 0)

    def img_file(i: int) -> str:
        return split.ann_files[i] if split.ann_files else jf

    def img_label(i: int) -> str:
        n = names[i] if name_ok[i] else f"#{i}"
        return f"image {n}" + (f" (id {img_ids[i]})" if id_ok[i] else "")

    for i in np.flatnonzero(~id_ok):
        out.add(Issue("schema", img_file(i), None, f"{img_label(i)} has no integer 'id' (found {images[i].get('id') if isinstance(images[i], dict) else images[i]!r:.60})"), split.name, i, "image")
    for i in np.flatnonzero(~name_ok):
        out.add(Issue("schema", img_file(i), None, f"image #{i} has no 'file_name' string"), split.name, i, "image")
    for i in np.flatnonzero(unsafe):
        out.add(Issue("schema", img_file(i), None, f"{img_label(i)}: 'file_name' must be a relative path inside "
                      f"images/ (no leading '/', no '..')"), split.name, i, "image")
    name_ok &= ~unsafe
    if len(images):
        dup = pd.Series(img_ids).duplicated(keep="first").to_numpy() & id_ok
        for i in np.flatnonzero(dup):
            out.add(Issue("duplicate_image_id", img_file(i), None,
                          f"image id {img_ids[i]} is used twice (second time by {names[i]}); ids must be unique"), split.name, i, "image")
        dupn = pd.Series(names).duplicated(keep="first").to_numpy() & name_ok
        for i in np.flatnonzero(dupn):
            out.add(Issue("duplicate_file_name", img_file(i), None,
                          f"file {names[i]} is listed twice in {jf} (ids {img_ids[names.index(names[i])]} and {img_ids[i]})"), split.name, i, "image")
    else:
        dup = np.zeros(0, bool)

    # ---- image files (one by one: I/O)
    if probe is not None:
        for i in range(len(images)):
            if not name_ok[i]:
                continue
            info = probe(split, i)
            shown = info.file or names[i]
            if info.status == "missing":
                out.add(Issue("image_missing", shown, None, f"{img_label(i)} does not exist; add the file or "
                              f"remove the image from {img_file(i)}"), split.name, i, "image")
            elif info.status == "unreadable":
                out.add(Issue("image_unreadable", shown, None, f"{img_label(i)} cannot be decoded: "
                              f"{info.reason or 'not an image Pillow can read'}"), split.name, i, "image")
            elif info.status == "ok" and size_ok[i] and (round(widths[i]), round(heights[i])) != (info.width, info.height):
                hint = ""
                if (round(widths[i]), round(heights[i])) == (info.raw_width, info.raw_height):
                    hint = (f"; the annotation has the size before the EXIF rotation (orientation "
                            f"{info.orientation}): the boxes were probably drawn on the unrotated picture")
                out.add(Issue("image_size_mismatch", img_file(i), None,
                              f"{img_label(i)} is {info.width}x{info.height} pixels (EXIF orientation applied) "
                              f"but the annotation says {_fmt(widths[i])}x{_fmt(heights[i])}{hint}"), split.name, i, "image")

    for i in np.flatnonzero(~size_ok & name_ok):
        if probe is not None and probe(split, i).status in ("missing", "unreadable"):
            continue  # already reported as a file problem
        out.add(Issue("schema", img_file(i), None, f"{img_label(i)} needs positive numbers 'width' and "
                      f"'height', found {images[i].get('width')!r} x {images[i].get('height')!r}"), split.name, i, "image")

    # ---- annotations
    n = len(anns)
    ann_ids, aid_ok = _ints(_col(anns, "id"))
    ann_img, aimg_ok = _ints(_col(anns, "image_id"))
    ann_cat, acat_ok = _ints(_col(anns, "category_id"))
    boxes, box_ok = _boxes(_col(anns, "bbox"))

    # where each annotation's image is (first image with that id)
    index = pd.Index(img_ids[id_ok]) if len(images) else pd.Index([], dtype=np.int64)
    first_rows = np.flatnonzero(id_ok)
    if len(index) and not index.is_unique:
        keep = ~index.duplicated(keep="first")
        index, first_rows = index[keep], first_rows[keep]
    pos = index.get_indexer(ann_img) if n else np.zeros(0, np.int64)
    pos = np.where(aimg_ok, pos, -1)
    img_row = np.where(pos >= 0, first_rows[np.clip(pos, 0, None)] if len(first_rows) else -1, -1)

    def ann_file(k: int) -> str:
        r = img_row[k]
        return img_file(int(r)) if r >= 0 else jf

    def aid(k: int):
        return int(ann_ids[k]) if aid_ok[k] else None

    def on(k: int) -> str:
        r = img_row[k]
        return f" on {names[r]}" if r >= 0 and name_ok[r] else ""

    for k in np.flatnonzero(~aid_ok):
        out.add(Issue("schema", ann_file(k), None, f"annotation #{k}{on(k)} has no integer 'id'"), split.name, k, "annotation")
    for k in np.flatnonzero(~aimg_ok):
        out.add(Issue("schema", jf, aid(k), f"annotation {aid(k)} has no integer 'image_id'"), split.name, k, "annotation")
    for k in np.flatnonzero(~acat_ok):
        out.add(Issue("schema", ann_file(k), aid(k), f"annotation {aid(k)}{on(k)} has no integer 'category_id'"), split.name, k, "annotation")
    for k in np.flatnonzero(~box_ok):
        out.add(Issue("bbox_invalid", ann_file(k), aid(k), f"annotation {aid(k)}{on(k)} needs 'bbox' = [x, y, width, "
                      f"height] of 4 finite numbers, found {anns[k].get('bbox') if isinstance(anns[k], dict) else None!r:.80}"), split.name, k, "annotation")
    if n:
        dupa = pd.Series(ann_ids).duplicated(keep="first").to_numpy() & aid_ok
        for k in np.flatnonzero(dupa):
            out.add(Issue("duplicate_annotation_id", ann_file(k), aid(k),
                          f"annotation id {aid(k)} is used twice in {jf}; ids must be unique"), split.name, k, "annotation")
    orphan = aimg_ok & (img_row < 0)
    for k in np.flatnonzero(orphan):
        out.add(Issue("annotation_orphan", jf, aid(k),
                      f"annotation {aid(k)} points at image id {ann_img[k]}, which is not in 'images'"), split.name, k, "annotation")
    known = np.fromiter(known_cats, np.int64, len(known_cats))
    unknown_cat = acat_ok & ~np.isin(ann_cat, known)
    for k in np.flatnonzero(unknown_cat):
        out.add(Issue("category_unknown", ann_file(k), aid(k), f"annotation {aid(k)}{on(k)} uses category id "
                      f"{ann_cat[k]}, which is not in 'categories' (known: {sorted(known_cats)[:20]})"), split.name, k, "annotation")

    x, y, w, h = boxes.T if n else (np.zeros(0),) * 4
    degenerate = box_ok & ((w <= 0) | (h <= 0))
    for k in np.flatnonzero(degenerate):
        out.add(Issue("bbox_degenerate", ann_file(k), aid(k), _degenerate_text(split, boxes[k], on(k))), split.name, k, "annotation")
    has_size = np.zeros(n, bool)
    W = np.zeros(n)
    H = np.zeros(n)
    if n and len(images):
        valid_row = img_row >= 0
        has_size[valid_row] = size_ok[img_row[valid_row]]
        W[valid_row] = widths[img_row[valid_row]]
        H[valid_row] = heights[img_row[valid_row]]
    t = BOX_TOLERANCE
    outside = box_ok & ~degenerate & has_size & ((x < -t) | (y < -t) | (x + w > W + t) | (y + h > H + t))
    for k in np.flatnonzero(outside):
        out.add(Issue("bbox_outside_image", ann_file(k), aid(k),
                      _outside_text(split, boxes[k], W[k], H[k], on(k))), split.name, k, "annotation")

    # ---- statistics over the valid boxes
    valid = box_ok & ~degenerate & ~outside & acat_ok & ~unknown_cat & ~orphan
    if n:
        counts = pd.Series(ann_cat[valid]).value_counts()
        stats.boxes_per_class = {int(c): int(v) for c, v in counts.items()}
        area = (w * h)[valid]
        stats.box_sizes = {"small": int((area < SMALL).sum()), "medium": int(((area >= SMALL) & (area < MEDIUM)).sum()),
                           "large": int((area >= MEDIUM).sum())}
    with_boxes = np.zeros(len(images), bool)
    if n:
        with_boxes[img_row[valid & (img_row >= 0)]] = True
    no_box = np.flatnonzero(~with_boxes & id_ok & ~dup)
    stats.images_without_boxes = int(len(no_box))
    for i in no_box:
        out.add(Issue("image_without_boxes", img_file(i), None, f"{img_label(i)} has no boxes (allowed: it "
                      f"teaches the model what background looks like)", "warning"), split.name, i, "image")
    return stats


def _degenerate_text(split: Split, b: np.ndarray, where: str) -> str:
    x, y, w, h = (float(v) for v in b)
    parts = []
    if split.box_style == "xyxy":
        for size, lo, name in ((w, x, "x"), (h, y, "y")):
            if size == 0:
                parts.append(f"zero {'width' if name == 'x' else 'height'} ({name}min = {name}max = {_fmt(lo)})")
            elif size < 0:
                parts.append(f"negative {'width' if name == 'x' else 'height'} ({name}min = {_fmt(lo)} > "
                             f"{name}max = {_fmt(lo + size)})")
    else:
        for size, name in ((w, "width"), (h, "height")):
            if size <= 0:
                parts.append(f"{'zero' if size == 0 else 'negative'} {name}")
        parts = [" and ".join(parts) + f" (bbox = [{', '.join(_fmt(v) for v in b)}])"]
    return f"box{where} has " + " and ".join(parts)


def _outside_text(split: Split, b: np.ndarray, W: float, H: float, where: str) -> str:
    x, y, w, h = (float(v) for v in b)
    if split.box_style == "xyxy":
        coords = f"xmin={_fmt(x)} ymin={_fmt(y)} xmax={_fmt(x + w)} ymax={_fmt(y + h)}"
    else:
        coords = f"bbox = [{_fmt(x)}, {_fmt(y)}, {_fmt(w)}, {_fmt(h)}], right {_fmt(x + w)}, bottom {_fmt(y + h)}"
    return f"box{where} is not inside the {_fmt(W)}x{_fmt(H)} image ({coords})"
