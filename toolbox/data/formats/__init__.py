"""Dataset formats the toolbox reads, each a module with `detect(root) -> bool`, `read(root) -> Source`
and `EXPECTED` (the files it looks for, quoted in errors). Auto-detection tries them in the order of
FORMATS, from the most specific layout to the loosest (LabelMe: any folder of JSON files with shapes).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ..source import Source
from . import coco, labelme, roboflow, voc, yolo

FORMATS = {"coco": coco, "roboflow": roboflow, "yolo": yolo, "voc": voc, "labelme": labelme}
IGNORED = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


def find_root(path: Path) -> Path:
    """The dataset's own folder: descend through wrapper folders (archives often add one or two)."""
    root = path
    for _ in range(4):
        if any(m.detect(root) for m in FORMATS.values()):
            return root
        entries = [p for p in root.iterdir() if p.name not in IGNORED and not p.name.startswith(".")]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) != 1 or any(p.is_file() and p.suffix.lower() in (".json", ".yaml", ".yml", ".txt", ".xml") for p in entries):
            break
        root = dirs[0]
    return root if any(m.detect(root) for m in FORMATS.values()) else path


def detect(root: Path) -> str:
    for name, module in FORMATS.items():
        if module.detect(root):
            return name
    expected = "; ".join(f"{n}: {m.EXPECTED}" for n, m in FORMATS.items())
    raise InputError(f"{root}: no dataset layout recognised. Expected one of: {expected}. "
                     f"Name the format with --format if the layout is close")


def read(root: Path, fmt: str = "auto", embedded_dir: Path | None = None) -> Source:
    """Read the dataset at `root`; `embedded_dir` is where LabelMe images kept inside their JSON
    (imageData) are decoded to, as the only format that holds images which are not files."""
    if fmt == "auto":
        fmt = detect(root)
    module = FORMATS.get(fmt)
    if module is None:
        raise InputError(f"unknown format '{fmt}' (choose from auto, {', '.join(FORMATS)})")
    if not module.detect(root):
        raise InputError(f"{root} is not a {fmt} dataset: expected {module.EXPECTED}")
    if module is labelme:
        return labelme.read(root, embedded_dir)
    return module.read(root)
