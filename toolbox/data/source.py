"""What a format reader hands to the checker: a dataset as COCO dicts per split, plus where each
image and each annotation came from (so every problem names the user's own file).

Readers never copy anything; `toolbox.data.importer` links/copies the images into the workspace and
`toolbox.data.check` checks the COCO dicts column-wise (numpy/pandas, no per-box Python loops).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # gradio depends on orjson; a few times faster than json on large annotation files
    import orjson as _orjson
except ImportError:  # pragma: no cover - optional speed-up
    _orjson = None

SPLITS = ("train", "val", "test")


@dataclass
class Issue:
    """One problem found in a dataset: an error fails the check, a warning does not."""

    code: str
    file: str | None
    annotation_id: Any
    problem: str
    severity: str = "error"
    # where the problem sits, for --fix (not written to the report)
    split: str | None = field(default=None, compare=False, repr=False)
    row: int | None = field(default=None, compare=False, repr=False)
    target: str | None = field(default=None, compare=False, repr=False)  # "image" | "annotation"

    def as_dict(self) -> dict:
        return {"code": self.code, "file": self.file, "annotation_id": self.annotation_id, "problem": self.problem}


@dataclass
class Split:
    """One split as a COCO dict.

    coco: {"images": [...], "annotations": [...], "categories": [...], ...}; image `file_name`s are
        the workspace names (relative to the dataset's images/ folder).
    json_file: the user's file that annotation problems are reported against (relative to the
        source root), e.g. "annotations/instance_train.json" or "train/_annotations.coco.json".
    image_root: where `file_name` is resolved when `image_src` is None.
    image_src: per image (same order as coco["images"]) the user's file, for converted formats.
    ann_files: per image, the user's annotation file (VOC XML, YOLO txt, LabelMe JSON) to name in
        problems instead of `json_file`.
    box_style: how box problems are worded: "coco" (x, y, w, h) or "xyxy" (xmin, ymin, xmax, ymax).
    """

    name: str
    coco: dict
    json_file: str
    image_root: Path | None = None
    image_src: list[Path | None] | None = None
    ann_files: list[str] | None = None
    box_style: str = "coco"
    broken: bool = False  # the annotation file could not be read at all (already reported)

    def image_path(self, index: int) -> Path | None:
        if self.image_src is not None:
            return self.image_src[index]
        fn = self.coco["images"][index].get("file_name")
        if not isinstance(fn, str) or self.image_root is None:
            return None
        return self.image_root / fn


@dataclass
class Source:
    """A dataset read from the user's folder: its format, splits and the reader's own findings."""

    format: str
    root: Path
    splits: dict[str, Split] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)


def load_json(path: Path) -> Any:
    """Parse a JSON file (orjson when available); raise ValueError with line and column on bad syntax."""
    data = path.read_bytes()
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # json is more lenient (NaN) and gives the message users know
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def common_parent(paths: list[Path]) -> Path | None:
    """The deepest folder holding all `paths` (used to keep sub-folders but drop a shared prefix)."""
    import os

    if not paths:
        return None
    return Path(os.path.commonpath([str(p.parent) for p in paths]))
