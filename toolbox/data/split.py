"""`split`: re-split a workspace dataset's train and val images by percent, with a seed.

train and val are pooled (a test split is left alone), ordered by file name so the result depends only
on the images and the seed, shuffled, and cut. Image and annotation ids are renumbered (the two old
files may reuse ids). The old files stay as instance_train.json.bak / instance_val.json.bak, as in
PaddleX, and the dataset is checked again so its report matches the new split.
"""
from __future__ import annotations

import math
import os
import shutil

import numpy as np

from ..errors import InputError, UsageError
from ..fileio import write_json
from ..workspace import Workspace
from .source import load_json


def resplit(name: str, train_percent: float, val_percent: float, seed: int = 0,
            workspace: Workspace | str | os.PathLike | None = None) -> dict:
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    for label, v in (("--train-percent", train_percent), ("--val-percent", val_percent)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v < 100):
            raise UsageError(f"{label} must be a number between 0 and 100 (exclusive), got {v}")
    if abs(train_percent + val_percent - 100) > 1e-6:
        raise UsageError(f"--train-percent and --val-percent must add up to 100, got {train_percent:g} + "
                         f"{val_percent:g} = {train_percent + val_percent:g}")
    d = ws.dataset_dir(name)
    ann_dir = d / "annotations"
    parts = []
    for split in ("train", "val"):
        path = ann_dir / f"instance_{split}.json"
        if not path.is_file():
            continue
        try:
            coco = load_json(path)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: {e}; fix or re-import the dataset before splitting") from None
        if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
            raise InputError(f"{path} is not a COCO file with an 'images' list; re-import the dataset")
        parts.append(coco)
    if not parts:
        raise InputError(f"{ann_dir} has neither instance_train.json nor instance_val.json; import the dataset "
                         f"with `python -m toolbox check PATH --name {d.name}`")
    pooled = []  # (file_name, image dict, [annotations])
    for coco in parts:
        by_image: dict = {}
        for a in coco.get("annotations") or []:
            if isinstance(a, dict):
                by_image.setdefault(a.get("image_id"), []).append(a)
        for im in coco["images"]:
            if isinstance(im, dict):
                pooled.append((str(im.get("file_name")), im, by_image.get(im.get("id"), [])))
    if len(pooled) < 2:
        raise InputError(f"dataset '{d.name}' has {len(pooled)} image(s) in train and val: at least 2 are needed to split")
    pooled.sort(key=lambda t: t[0])
    order = np.random.default_rng(seed).permutation(len(pooled))
    n_train = min(max(1, round(len(pooled) * train_percent / 100)), len(pooled) - 1)
    chosen = {"train": [pooled[i] for i in order[:n_train]], "val": [pooled[i] for i in order[n_train:]]}
    base = {k: v for k, v in parts[0].items() if k not in ("images", "annotations")}
    for split, items in chosen.items():
        items.sort(key=lambda t: t[0])
        images, anns = [], []
        for new_id, (_, im, its_anns) in enumerate(items, 1):
            images.append({**im, "id": new_id})
            for a in its_anns:
                anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
        path = ann_dir / f"instance_{split}.json"
        if path.is_file():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        write_json(path, {**base, "images": images, "annotations": anns}, indent=None)
    from .api import convert

    return convert(d, workspace=ws)
