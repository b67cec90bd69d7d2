"""`--fix`: repair what can be repaired without guessing, in the workspace copy, reporting each change.

- an annotation with an unusable box, category or image reference is dropped;
- a box that passes the image border is clipped to it (dropped if nothing is left);
- a duplicate annotation id is renumbered;
- an image that is missing, unreadable, or listed twice is dropped with its annotations;
- an image whose annotated size differs from the file gets the file's size.
Everything else (broken JSON, inconsistent categories, empty splits) stays an error. Each change
becomes a warning with the original problem and what was done.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .check import BOX_TOLERANCE, CheckResult, ImageProbe
from .source import Issue, Source

DROP_IMAGE = {"schema", "image_missing", "image_unreadable", "duplicate_image_id", "duplicate_file_name"}
DROP_ANN = {"schema", "bbox_invalid", "bbox_degenerate", "annotation_orphan", "category_unknown"}


def apply_fix(source: Source, result: CheckResult, probe: ImageProbe | None) -> list[Issue]:
    """Change `source` in place; return one warning per change."""
    done: list[Issue] = []
    by_split: dict[str, list[Issue]] = defaultdict(list)
    for issue in result.errors:
        if issue.split in source.splits and issue.row is not None:
            by_split[issue.split].append(issue)
    for name, issues in by_split.items():
        split = source.splits[name]
        images, anns = split.coco["images"], split.coco["annotations"]
        drop_img: set[int] = set()
        drop_ann: set[int] = set()
        for issue in issues:
            if issue.target == "image":
                if issue.code in DROP_IMAGE:
                    drop_img.add(issue.row)
                    done.append(_warn(issue, "dropped the image and its boxes"))
                elif issue.code == "image_size_mismatch" and probe is not None:
                    info = probe(split, issue.row)
                    images[issue.row]["width"], images[issue.row]["height"] = info.width, info.height
                    done.append(_warn(issue, f"set the size to {info.width}x{info.height}"))
            elif issue.target == "annotation":
                if issue.code in DROP_ANN:
                    drop_ann.add(issue.row)
                    done.append(_warn(issue, "dropped the box"))
        # image ids whose annotations go with the dropped images (a duplicate id keeps its first image)
        gone_ids = {images[i].get("id") for i in drop_img
                    if isinstance(images[i], dict) and not _is_dup_only(issues, i)}
        keep_images = [im for i, im in enumerate(images) if i not in drop_img]
        sizes = {im.get("id"): (im.get("width"), im.get("height")) for im in keep_images if isinstance(im, dict)}
        next_id = 1 + max((a.get("id") for a in anns if isinstance(a, dict) and type(a.get("id")) is int), default=0)
        for issue in issues:
            if issue.target != "annotation" or issue.row in drop_ann:
                continue
            a = anns[issue.row]
            if issue.code == "duplicate_annotation_id":
                a["id"] = next_id
                done.append(_warn(issue, f"renumbered it to {next_id}"))
                next_id += 1
            elif issue.code == "bbox_outside_image":
                w, h = sizes.get(a.get("image_id"), (None, None))
                clipped = _clip(a["bbox"], w, h) if w and h else None
                if clipped is None:
                    drop_ann.add(issue.row)
                    done.append(_warn(issue, "dropped the box (nothing is left inside the image)"))
                else:
                    a["bbox"] = clipped
                    a["area"] = clipped[2] * clipped[3]
                    done.append(_warn(issue, f"clipped it to [{', '.join(f'{v:g}' for v in clipped)}]"))
        for k, a in enumerate(anns):
            if k not in drop_ann and isinstance(a, dict) and a.get("image_id") in gone_ids:
                drop_ann.add(k)
        split.coco["images"] = keep_images
        split.coco["annotations"] = [a for k, a in enumerate(anns) if k not in drop_ann]
        if split.image_src is not None:
            split.image_src = [p for i, p in enumerate(split.image_src) if i not in drop_img]
        if split.ann_files is not None:
            split.ann_files = [p for i, p in enumerate(split.ann_files) if i not in drop_img]
    return done


def _is_dup_only(issues: list[Issue], row: int) -> bool:
    codes = {i.code for i in issues if i.target == "image" and i.row == row}
    return codes <= {"duplicate_image_id"}


def _clip(bbox, width, height) -> list[float] | None:
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = np.clip([x, y], 0, [width, height])
    x2, y2 = np.clip([x + w, y + h], 0, [width, height])
    if x2 - x1 <= BOX_TOLERANCE or y2 - y1 <= BOX_TOLERANCE:
        return None
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def _warn(issue: Issue, action: str) -> Issue:
    return Issue(issue.code, issue.file, issue.annotation_id, f"fixed: {action} ({issue.problem})", "warning",
                 split=issue.split)
