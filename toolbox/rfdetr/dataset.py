"""The Data step's COCO copy (datasets/<name>/) as the Roboflow layout rfdetr reads, without copying images.

rfdetr reads `<root>/{train,valid,test}/_annotations.coco.json` with each image next to its split's JSON.
The images are symbolic links (relative, so the workspace can move) to the workspace copy: no pixel is
stored twice, and unlike hard links they also work when runs/ and datasets/ lie on different file systems.

Category ids are rewritten to 0..N-1 in the contract's class order (rank of the source id, label_list):
rfdetr's own Roboflow reader ranks ids too, but writing the ranks makes rfdetr's class index equal the
contract's whatever that reader decides about gaps or unused categories.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.classes import label_index
from ..data.loader import SPLIT_FILES, dataset_labels
from ..errors import InputError
from ..fileio import write_json

ROBOFLOW_SPLITS = {"train": "train", "val": "valid", "test": "test"}
ANNOTATIONS = "_annotations.coco.json"


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == rel:
        return
    tmp = link.with_name(link.name + ".tmp-link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(rel, tmp)
    os.replace(tmp, link)


def write_layout(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, list[int], list[str]]:
    """Write the Roboflow layout of `dataset_dir` under `out_dir`; returns (out_dir, source cat_ids, label_list).

    A dataset without a val split gets `valid/` from its train split (rfdetr needs one to run): the run's
    eval numbers then say nothing about generalisation, as with RT-DETR runs without val.
    """
    src, out = Path(dataset_dir), Path(out_dir)
    cat_ids, names = dataset_labels(src)
    index = label_index(cat_ids)
    present = {s: src / "annotations" / f for s, f in SPLIT_FILES.items() if (src / "annotations" / f).is_file()}
    if "train" not in present:
        raise InputError(f"{src}: no train split (annotations/{SPLIT_FILES['train']}); re-split the dataset")
    plan = dict(present)
    plan.setdefault("val", present["train"])
    for split, path in plan.items():
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
        folder = out / ROBOFLOW_SPLITS[split]
        for img in coco.get("images", []):
            image = src / "images" / img["file_name"]
            if not image.is_file():
                raise InputError(f"{image}: listed in {path.name} but missing; run `python -m toolbox check` again")
            _link(image.resolve(), folder / img["file_name"])
        anns = [{**a, "category_id": index[a["category_id"]]} for a in coco.get("annotations", [])
                if a.get("category_id") in index]
        write_json(folder / ANNOTATIONS, {
            "info": coco.get("info", {}), "licenses": coco.get("licenses", []), "images": coco.get("images", []),
            "annotations": anns,
            "categories": [{"id": i, "name": n, "supercategory": "objects"} for i, n in enumerate(names)]})
    return out, list(cat_ids), list(names)
