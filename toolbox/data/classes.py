"""Class indexing shared by every step (CONTRACTS.md "Classes").

A dataset's COCO JSON keeps the source's category ids; the model's class index is the rank of a
category id among the categories *in use*, sorted by id. Keeping the ids and deriving the index means
a Roboflow export (whose category 0 is an unused root "supercategory none" entry) needs no id shift,
and every consumer (training, labels.txt, infer_cfg.yml, predict, SDK demos) agrees on one order.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def _used_ids(annotations: Iterable[Mapping[str, Any]]) -> set[int]:
    used: set[int] = set()
    for ann in annotations:
        cid = ann.get("category_id")
        if cid is not None:
            try:
                used.add(int(cid))
            except (TypeError, ValueError):
                continue
    return used


def is_roboflow_root(category: Mapping[str, Any], used: set[int],
                     categories: Sequence[Mapping[str, Any]] = ()) -> bool:
    """Roboflow's dataset-level root category: supercategory "none", no box uses it, and it is the
    parent of the others (their supercategory is its name) or the lowest id (Roboflow gives it 0)."""
    if str(category.get("supercategory", "")).lower() != "none" or int(category["id"]) in used:
        return False
    others = [c for c in categories if int(c["id"]) != int(category["id"])]
    if not others:
        return False
    is_parent = any(str(c.get("supercategory", "")) == str(category.get("name")) for c in others)
    is_lowest = int(category["id"]) < min(int(c["id"]) for c in others)
    return is_parent or is_lowest


def class_mapping(coco: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[list[int], list[str]]:
    """Return `(cat_ids, names)`: class index i ↔ category id `cat_ids[i]` named `names[i]`.

    `coco` is one COCO dict, or several (train, val, test of one dataset) that must share their
    categories; the categories in use are taken over all of them. Every category listed is kept
    (a class with no box in this split is still a class), except Roboflow's unused root category.
    When no annotations exist at all (an empty template), all listed categories are kept.
    """
    dicts = [coco] if isinstance(coco, Mapping) else list(coco)
    categories: dict[int, str] = {}
    used: set[int] = set()
    raw: list[Mapping[str, Any]] = []
    for d in dicts:
        used |= _used_ids(d.get("annotations") or [])
        for c in d.get("categories") or []:
            cid = int(c["id"])
            if cid not in categories:
                categories[cid] = str(c.get("name", cid))
                raw.append(c)
    dropped = {int(c["id"]) for c in raw if is_roboflow_root(c, used, raw)}
    cat_ids = sorted(cid for cid in categories if cid not in dropped)
    return cat_ids, [categories[cid] for cid in cat_ids]


def label_index(cat_ids: Sequence[int]) -> dict[int, int]:
    """Category id → class index, the inverse of `cat_ids`."""
    return {cid: i for i, cid in enumerate(cat_ids)}
