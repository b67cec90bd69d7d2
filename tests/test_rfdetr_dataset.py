"""The Roboflow layout written for rfdetr: class ids remapped to the contract's order, images linked not copied."""
from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from toolbox.rfdetr.dataset import write_layout


def make_dataset(root):
    """A workspace COCO copy with category ids 3, 7, 20 (not 0..N-1) and an image in a sub-folder."""
    (root / "images" / "sub").mkdir(parents=True)
    (root / "annotations").mkdir()
    cats = [{"id": 20, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    for split, names in (("train", ["a.jpg", "sub/b.jpg"]), ("val", ["c.jpg"])):
        images, anns = [], []
        for i, name in enumerate(names):
            Image.new("RGB", (40, 30), (i * 60, 20, 90)).save(root / "images" / name)
            images.append({"id": i + 1, "file_name": name, "width": 40, "height": 30})
            for k, cid in enumerate((3, 7, 20)):
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cid,
                             "bbox": [2 + k, 3, 10, 8], "area": 80, "iscrowd": 0})
        (root / "annotations" / f"instance_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_layout_ranks_ids_and_links_images(tmp_path):
    src = tmp_path / "datasets" / "pets"
    make_dataset(src)
    out, cat_ids, names = write_layout(src, tmp_path / "runs" / "r" / "rfdetr_data")
    assert cat_ids == [3, 7, 20] and names == ["cat", "dog", "zebra"]  # rank of the id, not file order
    train = json.loads((out / "train" / "_annotations.coco.json").read_text())
    assert [c["id"] for c in train["categories"]] == [0, 1, 2]
    assert [c["name"] for c in train["categories"]] == names
    by_box = {a["bbox"][0]: a["category_id"] for a in train["annotations"] if a["image_id"] == 1}
    assert by_box == {2: 0, 3: 1, 4: 2}  # ids 3, 7, 20 -> 0, 1, 2
    assert (out / "valid" / "_annotations.coco.json").is_file() and not (out / "test").exists()
    for rel in ("train/a.jpg", "train/sub/b.jpg", "valid/c.jpg"):
        link = out / rel
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (src / "images" / rel.split("/", 1)[1]).resolve()
    assert (src / "images" / "a.jpg").stat().st_nlink == 1  # not a hard link either: nothing duplicated

    pytest.importorskip("rfdetr")
    from rfdetr.detr import RFDETR

    # rfdetr's own reader sees the contract's classes in the contract's order
    assert RFDETR._load_classes(str(out)) == names
    assert [c["id"] for c in RFDETR._filtered_coco_categories(str(out))] == [0, 1, 2]


def test_a_dataset_without_val_validates_on_train(tmp_path):
    src = tmp_path / "ds"
    make_dataset(src)
    (src / "annotations" / "instance_val.json").unlink()
    out, _, _ = write_layout(src, tmp_path / "out")
    assert json.loads((out / "valid" / "_annotations.coco.json").read_text())["images"][0]["file_name"] == "a.jpg"
    write_layout(src, tmp_path / "out")  # idempotent: links already in place are kept
