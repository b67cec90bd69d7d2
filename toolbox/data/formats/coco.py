"""PaddleX's COCODetDataset layout: annotations/instance_{train,val[,test]}.json and images/.

`file_name` is relative to images/. Only these two places are looked at, so another folder named
`images` elsewhere in the tree (a PaddleX pitfall) changes nothing.
"""
from __future__ import annotations

from pathlib import Path

from ..source import SPLITS, Issue, Source, Split, load_json

NAME = "coco"
EXPECTED = "annotations/instance_train.json, annotations/instance_val.json and images/"


def detect(root: Path) -> bool:
    return (root / "annotations" / "instance_train.json").is_file() or \
        (root / "annotations" / "instance_val.json").is_file()


def read(root: Path) -> Source:
    src = Source(NAME, root)
    for split in SPLITS:
        rel = f"annotations/instance_{split}.json"
        path = root / rel
        if not path.is_file():
            continue
        src.splits[split] = read_coco_file(path, rel, split, root / "images", src.issues)
    return src


def read_coco_file(path: Path, rel: str, split: str, image_root: Path, issues: list[Issue],
                   fallback: bool = True) -> Split:
    """Load one COCO JSON; a syntax error becomes a `json_invalid` issue and an empty, broken split."""
    try:
        coco = load_json(path)
    except (ValueError, OSError) as e:
        issues.append(Issue("json_invalid", rel, None, f"cannot read {rel}: {e}; fix the file or re-export it"))
        return Split(split, {"images": [], "annotations": [], "categories": []}, rel, image_root, broken=True)
    out = Split(split, coco, rel, image_root)
    if fallback and isinstance(coco, dict):
        _fallback_image_root(out, image_root.parent)
    return out


def _fallback_image_root(split: Split, root: Path) -> None:
    """Accept file_names written relative to the dataset root ("images/a.jpg") as well."""
    images = split.coco.get("images")
    if not isinstance(images, list) or not images or split.image_root is None:
        return
    probe = [im.get("file_name") for im in images[:20] if isinstance(im, dict) and isinstance(im.get("file_name"), str)]
    if not probe or any((split.image_root / fn).is_file() for fn in probe):
        return
    if all((root / fn).is_file() for fn in probe):
        prefix = "images/"
        if all(fn.startswith(prefix) for fn in probe):  # keep the workspace layout canonical
            for im in images:
                fn = im.get("file_name") if isinstance(im, dict) else None
                if isinstance(fn, str) and fn.startswith(prefix):
                    im["file_name"] = fn[len(prefix):]
        else:
            split.image_root = root
