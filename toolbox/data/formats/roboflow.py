"""Roboflow's COCO export: train/, valid/, test/, each holding _annotations.coco.json and its images.

Roboflow lists a root category (supercategory "none", usually id 0) that no box uses; the ids are kept
as they are and `classes.class_mapping` drops that category, so class indices do not shift.
Images keep their split folder in `file_name` ("valid/x.jpg") so equal names in two splits never collide.
"""
from __future__ import annotations

from pathlib import Path

from ..source import Source
from .coco import read_coco_file

NAME = "roboflow"
ANN = "_annotations.coco.json"
FOLDERS = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}
EXPECTED = f"train/{ANN}, valid/{ANN} (and test/{ANN}) beside their images"


def detect(root: Path) -> bool:
    return any((root / d / ANN).is_file() for names in FOLDERS.values() for d in names)


def read(root: Path) -> Source:
    src = Source(NAME, root)
    for split, names in FOLDERS.items():
        for d in names:
            path = root / d / ANN
            if not path.is_file():
                continue
            out = read_coco_file(path, f"{d}/{ANN}", split, root, src.issues, fallback=False)
            images = out.coco.get("images") if isinstance(out.coco, dict) else None
            if isinstance(images, list):
                for im in images:
                    if isinstance(im, dict) and isinstance(im.get("file_name"), str):
                        im["file_name"] = f"{d}/{im['file_name']}"
            src.splits[split] = out
            break
    return src
