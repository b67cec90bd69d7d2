"""`check` on the PaddleX COCO layout: every failure the issue lists, with the exact error expected,
the report's contract, EXIF handling, hard links, --fix, and that the user's folder is never touched."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from PIL import Image

from tests.fixtures.data import coco_dict, issues, make_coco_dataset, write_image
from toolbox.data.api import check, convert
from toolbox.errors import UsageError


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def test_valid_dataset_report_contract(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "pets")
    before = _digest(src)
    r = check(src, workspace=workspace)
    assert r["check_pass"] is True and r["errors"] == []
    assert {"schema_version", "done_flag", "check_pass", "dataset_type", "source_format", "dataset_path", "show_type",
            "attributes", "analysis", "errors", "warnings"} <= set(r)
    assert r["schema_version"] == 1 and r["dataset_type"] == "COCODetDataset" and r["source_format"] == "coco"
    assert r["dataset_path"] == "datasets/pets"
    a = r["attributes"]
    assert (a["num_classes"], a["class_names"], a["train_samples"], a["val_samples"]) == (2, ["cat", "dog"], 2, 1)
    assert "test_samples" not in a
    d = workspace.datasets / "pets"
    assert (d / r["analysis"]["histogram"]).is_file()
    assert len(a["train_sample_paths"]) == 2 and all((d / p).is_file() for p in a["train_sample_paths"] + a["val_sample_paths"])
    assert r["analysis"]["box_sizes"] == {"small": 2, "medium": 1, "large": 0}  # 20², 30² < 32² ≤ 64x48
    assert json.loads((d / "check_dataset_result.json").read_text()) == r
    # images are hard links of the user's files (same file system), the user's folder unchanged
    assert os.path.samefile(d / "images" / "a.jpg", src / "images" / "a.jpg")
    assert _digest(src) == before
    ann = json.loads((d / "annotations" / "instance_train.json").read_text())
    assert [x["file_name"] for x in ann["images"]] == ["a.jpg", "b.jpg"]


def test_invalid_json_is_reported_with_line_and_column(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "d", train='{"images": [1,]}')
    r = check(src, workspace=workspace)
    assert not r["check_pass"]
    [e] = issues(r, "json_invalid")
    assert e["file"] == "annotations/instance_train.json"
    assert "line 1 column" in e["problem"]


def test_schema_errors(tmp_path, workspace):
    train = {"images": [{"id": "x", "file_name": "a.jpg", "width": 64, "height": 48}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, "3", 4]}],
             "categories": [{"id": 1, "name": "cat"}]}
    src = make_coco_dataset(tmp_path / "d", train=train)
    r = check(src, workspace=workspace)
    schema = [e["problem"] for e in issues(r, "schema")]
    assert any("has no integer 'id'" in p for p in schema)
    [bad] = issues(r, "bbox_invalid")
    assert bad["annotation_id"] == 1 and "4 finite numbers" in bad["problem"]
    (tmp_path / "e" / "annotations").mkdir(parents=True)
    make_coco_dataset(tmp_path / "e", train={"annotations": [], "categories": []})
    r = check(tmp_path / "e", workspace=workspace)
    assert any(e["problem"] == "'images' in annotations/instance_train.json must be a list, found nothing"
               for e in issues(r, "schema"))


def test_image_file_problems(tmp_path, workspace):
    train = coco_dict([(1, "a.jpg", 64, 48), (2, "gone.jpg", 64, 48), (3, "junk.jpg", 64, 48), (4, "big.jpg", 100, 48)],
                      [(1, 1, 1, [1, 1, 5, 5]), (2, 3, 1, [1, 1, 5, 5]), (3, 4, 1, [1, 1, 5, 5])])
    src = make_coco_dataset(tmp_path / "d", train=train)
    (src / "images" / "gone.jpg").unlink()
    (src / "images" / "junk.jpg").write_bytes(b"not an image at all")
    r = check(src, workspace=workspace)
    [m] = issues(r, "image_missing")
    assert m["file"] == "images/gone.jpg" and "image gone.jpg (id 2) does not exist" in m["problem"]
    [u] = issues(r, "image_unreadable")
    assert u["file"] == "images/junk.jpg" and "cannot be decoded" in u["problem"]
    [s] = issues(r, "image_size_mismatch")
    assert s["problem"] == ("image big.jpg (id 4) is 64x48 pixels (EXIF orientation applied) but the annotation "
                            "says 100x48")
    assert not r["check_pass"]


def test_exif_orientation_applied_on_import(tmp_path, workspace):
    # raw pixels 64x48, EXIF orientation 6 (rotate 90° clockwise to display): the picture is 48x64
    train = coco_dict([(1, "rot.jpg", 48, 64), (2, "b.jpg", 64, 48)], [(1, 1, 1, [1, 1, 40, 60]), (2, 2, 2, [1, 1, 5, 5])])
    src = make_coco_dataset(tmp_path / "d", train=train)
    write_image(src / "images" / "rot.jpg", (64, 48), exif_orientation=6)
    r = check(src, workspace=workspace)
    assert r["check_pass"], r["errors"]
    with Image.open(workspace.datasets / "d" / "images" / "rot.jpg") as im:
        assert im.size == (48, 64)
        assert im.getexif().get(0x0112, 1) == 1
    with Image.open(src / "images" / "rot.jpg") as im:  # the user's file is untouched
        assert im.size == (64, 48) and im.getexif().get(0x0112) == 6
    # annotated with the unrotated size: reported, with the reason
    train["images"][0].update(width=64, height=48)
    (src / "annotations" / "instance_train.json").write_text(json.dumps(train))
    r = check(src, workspace=workspace, overwrite=True)
    [e] = issues(r, "image_size_mismatch")
    assert "size before the EXIF rotation (orientation 6)" in e["problem"]


def test_box_and_id_problems(tmp_path, workspace):
    train = coco_dict(
        [(1, "a.jpg", 64, 48), (2, "b.jpg", 64, 48), (2, "c.jpg", 64, 48), (3, "empty.jpg", 64, 48)],
        [(1, 1, 1, [10, 10, 0, 5]),       # zero width
         (2, 1, 1, [50, 10, 20, 5]),      # right edge at 70 > 64
         (3, 1, 9, [1, 1, 5, 5]),         # unknown category
         (3, 2, 2, [1, 1, 5, 5]),         # duplicate annotation id
         (5, 77, 1, [1, 1, 5, 5]),        # image 77 does not exist
         (6, 1, 1, [1, 1, 5, 5])])
    src = make_coco_dataset(tmp_path / "d", train=train)
    r = check(src, workspace=workspace)
    assert not r["check_pass"]
    by = {e["code"]: e for e in r["errors"]}
    assert by["bbox_degenerate"] == {"code": "bbox_degenerate", "file": "annotations/instance_train.json",
                                     "annotation_id": 1,
                                     "problem": "box on a.jpg has zero width (bbox = [10, 10, 0, 5])"}
    assert by["bbox_outside_image"]["annotation_id"] == 2
    assert by["bbox_outside_image"]["problem"] == ("box on a.jpg is not inside the 64x48 image "
                                                   "(bbox = [50, 10, 20, 5], right 70, bottom 15)")
    assert by["category_unknown"]["problem"].startswith("annotation 3 on a.jpg uses category id 9, which is not in")
    assert by["duplicate_annotation_id"]["annotation_id"] == 3
    assert by["annotation_orphan"]["problem"] == "annotation 5 points at image id 77, which is not in 'images'"
    assert by["duplicate_image_id"]["problem"].startswith("image id 2 is used twice (second time by c.jpg)")
    [w] = issues(r, "image_without_boxes", "warnings")
    assert w["problem"].startswith("image empty.jpg (id 3) has no boxes")
    assert r["analysis"]["images_without_boxes"] == 1


def test_images_without_boxes_pass_with_warning(tmp_path, workspace):
    train = coco_dict([(1, "a.jpg", 64, 48), (2, "bg.jpg", 64, 48)], [(1, 1, 1, [1, 1, 5, 5])])
    r = check(make_coco_dataset(tmp_path / "d", train=train), workspace=workspace)
    assert r["check_pass"] and r["warning_counts"] == {"image_without_boxes": 1}


def test_category_mismatch_and_empty_split(tmp_path, workspace):
    val = coco_dict([], [], categories=((1, "cat"), (2, "wolf")))
    r = check(make_coco_dataset(tmp_path / "d", val=val), workspace=workspace)
    [m] = issues(r, "category_mismatch")
    assert m["file"] == "annotations/instance_val.json" and "id 2 'dog'" in m["problem"] and "id 2 'wolf'" in m["problem"]
    [e] = issues(r, "split_empty")
    assert e["problem"].startswith("the val split has no images")


def test_missing_val_split(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "d")
    (src / "annotations" / "instance_val.json").unlink()
    r = check(src, workspace=workspace)
    [e] = issues(r, "split_empty")
    assert e["problem"].startswith("there is no val split") and "toolbox split" in e["problem"]


def test_file_name_escaping_images_is_refused(tmp_path, workspace):
    train = coco_dict([(1, "../../outside.jpg", 64, 48)], [])
    src = make_coco_dataset(tmp_path / "d", train=train)
    write_image(tmp_path / "outside.jpg")
    r = check(src, workspace=workspace)
    assert any("must be a relative path inside images/" in e["problem"] for e in issues(r, "schema"))
    assert not (workspace.root / "outside.jpg").exists() and not (workspace.datasets / "outside.jpg").exists()


def test_fix_drops_and_clips_into_a_cleaned_copy(tmp_path, workspace):
    train = coco_dict([(1, "a.jpg", 64, 48), (2, "gone.jpg", 64, 48)],
                      [(1, 1, 1, [10, 10, 0, 5]), (2, 1, 1, [50, 10, 20, 5]), (3, 1, 2, [1, 1, 5, 5]),
                       (4, 2, 1, [1, 1, 5, 5])])
    src = make_coco_dataset(tmp_path / "d", train=train)
    (src / "images" / "gone.jpg").unlink()
    before = _digest(src)
    r = check(src, workspace=workspace, fix=True)
    assert r["check_pass"], r["errors"]
    fixed = {w["code"]: w["problem"] for w in r["warnings"] if w["problem"].startswith("fixed:")}
    assert fixed["bbox_degenerate"].startswith("fixed: dropped the box (box on a.jpg has zero width")
    assert fixed["bbox_outside_image"].startswith("fixed: clipped it to [50, 10, 14, 5]")
    assert fixed["image_missing"].startswith("fixed: dropped the image and its boxes")
    ann = json.loads((workspace.datasets / "d" / "annotations" / "instance_train.json").read_text())
    assert [a["id"] for a in ann["annotations"]] == [2, 3]
    assert ann["annotations"][0]["bbox"] == [50.0, 10.0, 14.0, 5.0]
    assert [im["file_name"] for im in ann["images"]] == ["a.jpg"]
    assert _digest(src) == before


def test_existing_dataset_needs_overwrite_and_recheck_in_place(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "d")
    check(src, workspace=workspace)
    with pytest.raises(UsageError, match="already exists .* --overwrite"):
        check(src, workspace=workspace)
    r = check("d", workspace=workspace)  # a workspace dataset by name: checked in place
    assert r["check_pass"] and r["dataset_path"] == "datasets/d"
    r = convert(src, workspace=workspace, overwrite=True)
    assert r["check_pass"]


def test_extra_images_folder_elsewhere_is_ignored(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "d")
    write_image(src / "extra" / "images" / "zzz.jpg")
    (src / "extra" / "images" / "notes.txt").write_text("unrelated")
    r = check(src, workspace=workspace)
    assert r["check_pass"] and r["attributes"]["train_samples"] == 2
    assert not (workspace.datasets / "d" / "images" / "zzz.jpg").exists()


def test_many_errors_are_capped_but_counted(tmp_path, workspace, monkeypatch):
    import toolbox.data.check as chk

    monkeypatch.setattr(chk, "MAX_LISTED", 3)
    boxes = [(k, 1, 1, [1, 1, 0, 5]) for k in range(1, 11)]
    train = coco_dict([(1, "a.jpg", 64, 48)], boxes)
    r = check(make_coco_dataset(tmp_path / "d", train=train), workspace=workspace)
    listed = issues(r, "bbox_degenerate")
    assert len(listed) == 4 and listed[-1]["problem"].startswith("... and 7 more 'bbox_degenerate' errors in train")
    assert r["error_counts"] == {"bbox_degenerate": 10}


def test_same_image_in_two_splits_is_a_warning(tmp_path, workspace):
    val = coco_dict([(1, "a.jpg", 64, 48)], [(1, 1, 1, [1, 1, 5, 5])])
    r = check(make_coco_dataset(tmp_path / "d", val=val), workspace=workspace)
    assert r["check_pass"], r.get("errors")  # the scanner places a.jpg from two threads at once: see below
    [w] = issues(r, "image_in_two_splits", "warnings")
    assert w["problem"].startswith("image a.jpg is in both train and val")


def test_fix_in_place_keeps_bak(tmp_path, workspace):
    train = coco_dict([(1, "a.jpg", 64, 48)], [(1, 1, 1, [1, 1, 5, 5]), (2, 1, 1, [1, 1, 0, 5])])
    convert(make_coco_dataset(tmp_path / "d", train=train), workspace=workspace)
    ann = workspace.datasets / "d" / "annotations"
    original = (ann / "instance_train.json").read_text()
    r = check("d", workspace=workspace, fix=True)
    assert r["check_pass"] and (ann / "instance_train.json.bak").read_text() == original
    assert [a["id"] for a in json.loads((ann / "instance_train.json").read_text())["annotations"]] == [1]


@pytest.mark.parametrize("orientation", [1, 6])
def test_an_image_placed_twice_at_once_is_imported_once(tmp_path, monkeypatch, orientation):
    """The scanner's threads can both find `dst` absent and both place it (the image of two splits):
    the second placement must neither fail nor leave a temporary file behind."""
    from pathlib import Path

    from toolbox.data.images import place

    src = write_image(tmp_path / "src" / "a.jpg", exif_orientation=orientation if orientation != 1 else None)
    dst = tmp_path / "out" / "a.jpg"
    place(src, dst, orientation)
    placed = dst.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(Path, "exists", lambda self: False)  # the other thread checked before this one placed it
        place(src, dst, orientation)
    assert [p.name for p in dst.parent.iterdir()] == ["a.jpg"]
    assert dst.read_bytes() == placed
    with Image.open(dst) as im:
        assert im.size == ((48, 64) if orientation == 6 else (64, 48))
