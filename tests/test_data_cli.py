"""The data step's commands end to end (exit codes, --help, split with .bak), the class mapping,
the demo generator, and the real BCCD VOC set when ../shared is present."""
from __future__ import annotations

import json
import pytest

from tests.conftest import shared_path
from tests.fixtures.data import coco_dict, make_coco_dataset
from toolbox.cli import main
from toolbox.data.api import check, split
from toolbox.data.classes import class_mapping
from toolbox.data.demo import ensure_demo_dataset, generate
from toolbox.errors import UsageError


def test_exit_codes(tmp_path, workspace, capsys):
    good = make_coco_dataset(tmp_path / "good")
    bad = make_coco_dataset(tmp_path / "bad", train=coco_dict([(1, "a.jpg", 64, 48)], [(1, 1, 1, [1, 1, 0, 3])]))
    ws = ["--workspace", str(workspace.root)]
    assert main([*ws, "check", str(good)]) == 0
    assert main([*ws, "check", str(bad)]) == 1
    err = capsys.readouterr()
    assert "bbox_degenerate" in err.out and "check failed" in err.err
    assert main([*ws, "convert", str(bad), "--name", "bad2"]) == 0  # convert reports but does not fail
    assert main([*ws, "check", str(good)]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*ws, "check", str(good), "--overwrite"]) == 0
    assert main([*ws, "check", str(tmp_path / "nope")]) == 2
    assert main([*ws, "check", "good"]) == 0  # a workspace dataset by name, in place
    assert main([*ws, "check", str(bad), "--name", "bad3", "--fix"]) == 0


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_option(capsys):
    text = _help(capsys, "check")
    for opt in ("--name", "--format", "--fix", "--overwrite", "roboflow", "labelme", "exit codes"):
        assert opt in text
    assert "exit 0 even when it has errors" in _help(capsys, "convert")
    text = _help(capsys, "split")
    for opt in ("--train-percent", "--val-percent", "--seed", ".bak"):
        assert opt in text


def test_split_by_percent_with_seed_keeps_bak(tmp_path, workspace):
    src = generate(tmp_path / "demo", num_train=8, num_val=2, image_size=64, num_classes=2)
    check(src, workspace=workspace)
    ann = workspace.datasets / "demo" / "annotations"
    old_train = (ann / "instance_train.json").read_text()
    r = split("demo", 70, 30, seed=1, workspace=workspace)
    assert r["check_pass"] and (r["attributes"]["train_samples"], r["attributes"]["val_samples"]) == (7, 3)
    assert (ann / "instance_train.json.bak").read_text() == old_train
    new = [json.loads((ann / f"instance_{s}.json").read_text()) for s in ("train", "val")]
    names = [im["file_name"] for d in new for im in d["images"]]
    assert sorted(names) == sorted(f"{s}_{i:05d}.jpg" for s, n in (("train", 8), ("val", 2)) for i in range(n))
    boxes_before = sum(len(json.loads((ann / f"instance_{s}.json.bak").read_text())["annotations"]) for s in ("train", "val"))
    assert sum(len(d["annotations"]) for d in new) == boxes_before
    again = split("demo", 70, 30, seed=1, workspace=workspace)
    assert again["attributes"] == r["attributes"]  # same seed, same split
    other = split("demo", 70, 30, seed=2, workspace=workspace)
    assert other["attributes"]["train_sample_paths"] != r["attributes"]["train_sample_paths"]
    with pytest.raises(UsageError, match="must add up to 100"):
        split("demo", 70, 20, workspace=workspace)
    with pytest.raises(UsageError, match="no dataset named 'nope'"):
        split("nope", 80, 20, workspace=workspace)


def test_class_mapping_rank_of_ids():
    coco = {"categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}, {"id": 0, "name": "root", "supercategory": "none"}],
            "annotations": [{"category_id": 7}, {"category_id": 3}]}
    assert class_mapping(coco) == ([3, 7], ["a", "b"])
    # a used category with supercategory "none" is a real class
    coco["annotations"].append({"category_id": 0})
    assert class_mapping(coco) == ([0, 3, 7], ["root", "a", "b"])


def test_demo_is_deterministic_and_sound(tmp_path):
    a = generate(tmp_path / "a", num_train=6, num_val=3, image_size=96, seed=5)
    b = generate(tmp_path / "b", num_train=6, num_val=3, image_size=96, seed=5)
    for f in ("annotations/instance_train.json", "annotations/instance_val.json", "images/train_00003.jpg"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    d = json.loads((a / "annotations" / "instance_train.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in d["images"]}
    assert max(sizes.values()) <= (96, 96) and len({c["name"] for c in d["categories"]}) == 4
    for ann in d["annotations"]:
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H


def test_ensure_demo_dataset(workspace):
    name = ensure_demo_dataset(workspace, num_train=4, num_val=2, image_size=64)
    report = json.loads((workspace.datasets / name / "check_dataset_result.json").read_text())
    assert report["check_pass"] and report["attributes"]["train_samples"] == 4
    mtime = (workspace.datasets / name / "check_dataset_result.json").stat().st_mtime_ns
    assert ensure_demo_dataset(workspace) == name  # already there: not generated again
    assert (workspace.datasets / name / "check_dataset_result.json").stat().st_mtime_ns == mtime
    assert not [p for p in workspace.root.iterdir() if p.name.startswith(".demo-")]


def test_tiny_dataset_fixture(session_workspace, tiny_dataset):
    d = session_workspace.dataset_dir(tiny_dataset)
    report = json.loads((d / "check_dataset_result.json").read_text())
    assert report["attributes"]["num_classes"] == 3
    assert (report["attributes"]["train_samples"], report["attributes"]["val_samples"]) == (16, 8)


def test_bccd_voc_converts_and_reports_zero_size_boxes(workspace):
    bccd = shared_path("data", "BCCD_voc")
    r = check(bccd, name="bccd", workspace=workspace)
    a = r["attributes"]
    assert a["class_names"] == ["Platelets", "RBC", "WBC"]
    assert (a["train_samples"], a["val_samples"], a["test_samples"]) == (205, 87, 72)
    assert not r["check_pass"]
    assert {(e["code"], e["file"]) for e in r["errors"]} == {
        ("bbox_degenerate", "Annotations/BloodImage_00338.xml"), ("bbox_degenerate", "Annotations/BloodImage_00343.xml")}
    e = next(e for e in r["errors"] if e["file"].endswith("00338.xml"))
    assert e["problem"] == "box on BloodImage_00338.jpg has zero width (xmin = xmax = 504) and zero height (ymin = ymax = 337)"
    assert isinstance(e["annotation_id"], int)
    assert sum(r["analysis"]["box_sizes"].values()) > 4000
    fixed = check(bccd, name="bccd", workspace=workspace, fix=True, overwrite=True)
    assert fixed["check_pass"] and fixed["warning_counts"]["bbox_degenerate"] == 2
