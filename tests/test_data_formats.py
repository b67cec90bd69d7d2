"""Every source format on small data made here: detection, conversion to the COCO layout (boxes,
class order, splits, file names), and the format-specific problems."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.fixtures.data import coco_dict, issues, make_coco_dataset, write_image
from toolbox.data import formats
from toolbox.data.api import check, convert
from toolbox.data.classes import class_mapping
from toolbox.errors import InputError


def _ann(workspace, name, split):
    return json.loads((workspace.datasets / name / "annotations" / f"instance_{split}.json").read_text())


def _boxes(coco):
    return sorted((a["category_id"], [round(v, 3) for v in a["bbox"]]) for a in coco["annotations"])


# ----------------------------------------------------------------------------- Roboflow
def make_roboflow(root):
    cats = [{"id": 0, "name": "cells", "supercategory": "none"}, {"id": 1, "name": "Platelets", "supercategory": "cells"},
            {"id": 2, "name": "RBC", "supercategory": "cells"}]
    for d, boxes in (("train", [(1, 1, 2, [1, 2, 10, 10])]), ("valid", [(1, 1, 1, [3, 3, 5, 5])]),
                     ("test", [(1, 1, 2, [0, 0, 8, 8])])):
        coco = coco_dict([(1, "img.jpg", 64, 48)], boxes)  # the same name in every split
        coco["categories"] = cats
        (root / d).mkdir(parents=True)
        (root / d / "_annotations.coco.json").write_text(json.dumps(coco))
        write_image(root / d / "img.jpg")
    return root


def test_roboflow_keeps_ids_drops_root_category_and_test_split(tmp_path, workspace):
    src = make_roboflow(tmp_path / "rf")
    assert formats.detect(src) == "roboflow"
    r = check(src, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert r["source_format"] == "roboflow"
    assert r["attributes"]["class_names"] == ["Platelets", "RBC"] and r["attributes"]["test_samples"] == 1
    train = _ann(workspace, "rf", "train")
    assert [c["id"] for c in train["categories"]] == [0, 1, 2]  # ids kept as exported
    assert class_mapping(train) == ([1, 2], ["Platelets", "RBC"])
    assert train["images"][0]["file_name"] == "train/img.jpg"
    assert _ann(workspace, "rf", "val")["images"][0]["file_name"] == "valid/img.jpg"
    assert _ann(workspace, "rf", "test")["images"][0]["file_name"] == "test/img.jpg"
    assert (workspace.datasets / "rf" / "images" / "valid" / "img.jpg").is_file()


# ----------------------------------------------------------------------------- VOC
VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = "<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


def _voc_xml(path, name, objects, w=64, h=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(VOC_OBJ.format(cls=c, x1=a, y1=b, x2=cc, y2=d) for c, (a, b, cc, d) in objects)
    path.write_text(VOC_XML.format(name=name, w=w, h=h, objects=objs))


def make_voc_classic(root):
    data = {"im1": [("dog", (1, 2, 21, 12))], "im2": [("cat", (5, 5, 15, 25)), ("dog", (412, 10, 412, 20))],
            "im3": [("cat", (0, 0, 64, 48))], "im4": []}
    for name, objects in data.items():
        _voc_xml(root / "Annotations" / f"{name}.xml", name, objects, w=640 if name == "im2" else 64,
                 h=480 if name == "im2" else 48)
        write_image(root / "JPEGImages" / f"{name}.jpg", (640, 480) if name == "im2" else (64, 48))
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("im1\nim2\n")
    (sets / "val.txt").write_text("im3\n")
    (sets / "test.txt").write_text("im4\n")
    return root


def test_voc_classic_layout(tmp_path, workspace):
    src = make_voc_classic(tmp_path / "voc")
    assert formats.detect(src) == "voc"
    r = convert(src, workspace=workspace)
    assert r["attributes"]["class_names"] == ["cat", "dog"]  # no list file: sorted names
    assert (r["attributes"]["train_samples"], r["attributes"]["val_samples"], r["attributes"]["test_samples"]) == (2, 1, 1)
    train = _ann(workspace, "voc", "train")
    assert [im["file_name"] for im in train["images"]] == ["im1.jpg", "im2.jpg"]
    assert _boxes(train) == [(1, [5, 5, 10, 20]), (2, [1, 2, 20, 10]), (2, [412, 10, 0, 10])]
    [e] = issues(r, "bbox_degenerate")
    assert e["file"] == "Annotations/im2.xml"
    assert e["problem"] == "box on im2.jpg has zero width (xmin = xmax = 412)"
    assert not r["check_pass"]
    assert issues(r, "image_without_boxes", "warnings")[0]["file"] == "Annotations/im4.xml"


def test_voc_paddlex_list_layout_with_label_list(tmp_path, workspace):
    root = tmp_path / "pdx"
    _voc_xml(root / "Annotations" / "a.xml", "a", [("zebra", (1, 1, 11, 11)), ("ant", (2, 2, 12, 12))])
    _voc_xml(root / "Annotations" / "b.xml", "b", [("ant", (3, 3, 13, 13))])
    _voc_xml(root / "Annotations" / "c.xml", "c", [("bee", (3, 3, 13, 13))])
    for n in "abc":
        write_image(root / "JPEGImages" / f"{n}.jpg")
    (root / "label_list.txt").write_text("zebra\nant\n")
    (root / "train_anno_list.txt").write_text("JPEGImages/a.jpg Annotations/a.xml\nJPEGImages/c.jpg Annotations/c.xml\n")
    (root / "val_anno_list.txt").write_text("JPEGImages/b.jpg Annotations/b.xml\n")
    r = convert(root, workspace=workspace)
    assert r["attributes"]["class_names"] == ["zebra", "ant"]  # the list file's order
    assert _boxes(_ann(workspace, "pdx", "train")) == [(1, [1, 1, 10, 10]), (2, [2, 2, 10, 10])]
    [e] = issues(r, "category_unknown")
    assert e["file"] == "Annotations/c.xml" and e["problem"].startswith("object 'bee' is not in label_list.txt")


def test_voc_without_imagesets_goes_to_train_and_asks_for_split(tmp_path, workspace):
    root = tmp_path / "flat"
    _voc_xml(root / "Annotations" / "a.xml", "a", [("ant", (1, 1, 11, 11))])
    write_image(root / "JPEGImages" / "a.jpg")
    r = convert(root, workspace=workspace)
    assert r["attributes"]["train_samples"] == 1
    [e] = issues(r, "split_empty")
    assert "python -m toolbox split" in e["problem"]


# ----------------------------------------------------------------------------- YOLO
def make_yolo(root, names=("person", "car"), roboflow_paths=False):
    for split in ("train", "valid"):
        write_image(root / split / "images" / f"{split}1.jpg", (100, 50))
        (root / split / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "train1.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n")
    (root / "valid" / "labels" / "valid1.txt").write_text("0 0.1 0.2 0.3 0.5 0.2 0.1\n5 0.5 0.5 0.1 0.1\n")
    prefix = "../" if roboflow_paths else ""
    cfg = {"train": f"{prefix}train/images", "val": f"{prefix}valid/images", "nc": len(names),
           "names": list(names) if not isinstance(names, dict) else names}
    (root / "data.yaml").write_text(yaml.safe_dump(cfg))
    return root


@pytest.mark.parametrize("names,roboflow_paths", [(("person", "car"), False), ({0: "person", 1: "car"}, True)])
def test_yolo(tmp_path, workspace, names, roboflow_paths):
    src = make_yolo(tmp_path / "yolo", names, roboflow_paths)
    assert formats.detect(src) == "yolo"
    r = convert(src, workspace=workspace)
    assert r["attributes"]["class_names"] == ["person", "car"]  # the names order, not sorted
    train = _ann(workspace, "yolo", "train")
    assert train["images"][0]["file_name"] == "train/images/train1.jpg"
    assert train["images"][0]["width"] == 100 and train["images"][0]["height"] == 50
    assert _boxes(train) == [(1, [5, 2.5, 10, 5]), (2, [40, 15, 20, 20])]
    [w] = issues(r, "polygon_as_box", "warnings")
    assert w["file"] == "valid/labels/valid1.txt" and w["problem"].startswith("line 1 is a polygon of 3 points")
    assert _boxes(_ann(workspace, "yolo", "val")) == [(1, [10, 5, 20, 20])]
    [e] = issues(r, "category_unknown")
    assert e["problem"] == "line 2: class 5 is not in 'names' of data.yaml (0..1)"


# ----------------------------------------------------------------------------- LabelMe
def _labelme(path, image, shapes, w=64, h=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.0.1", "shapes": shapes, "imagePath": image, "imageWidth": w,
                                "imageHeight": h, "imageData": None}))


def test_labelme_rectangles_become_boxes_other_shapes_reported(tmp_path, workspace):
    root = tmp_path / "lm"
    rect = {"label": "leaf", "points": [[30, 40], [10, 5]], "shape_type": "rectangle"}
    poly = {"label": "stem", "points": [[1, 1], [5, 1], [3, 4]], "shape_type": "polygon"}
    for split in ("train", "val"):
        write_image(root / split / "p1.jpg")
        _labelme(root / split / "p1.json", "p1.jpg", [rect, poly])
    assert formats.detect(root) == "labelme"
    r = check(root, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert r["attributes"]["class_names"] == ["leaf"]
    train = _ann(workspace, "lm", "train")
    assert _boxes(train) == [(1, [10, 5, 20, 35])] and train["images"][0]["file_name"] == "train/p1.jpg"
    shapes = issues(r, "shape_not_box", "warnings")
    assert {w["file"] for w in shapes} == {"train/p1.json", "val/p1.json"}
    assert shapes[0]["problem"].startswith("shape #2 'stem' is a polygon, not a rectangle: not used")


# ----------------------------------------------------------------------------- detection
def test_forced_format_must_match_and_unknown_layout_is_explained(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "d")
    with pytest.raises(InputError, match="is not a yolo dataset: expected data.yaml"):
        check(src, format="yolo", workspace=workspace)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.md").write_text("hi")
    with pytest.raises(InputError, match="no dataset layout recognised"):
        check(tmp_path / "nothing", workspace=workspace)


def test_wrapper_folder_is_descended(tmp_path, workspace):
    make_coco_dataset(tmp_path / "outer" / "inner")
    r = check(tmp_path / "outer", workspace=workspace)
    assert r["check_pass"] and r["dataset_path"] == "datasets/outer"
