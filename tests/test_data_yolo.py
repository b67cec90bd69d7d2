"""YOLO exports whose data.yaml was written on another machine (issue 11, item 1): each split path is
found in the documented order (as written, without a leading '../', then beside data.yaml in the
Roboflow or the Ultralytics layout), each replacement is one warning naming both paths, and only
nothing found is an error, with an empty-split message that says where to look. Also `names` as a
list or a mapping, and an `nc` that disagrees. Every export is built here."""
from __future__ import annotations

import zipfile

import pytest
import yaml

from tests.fixtures.data import issues, write_image
from toolbox.data.api import convert
from toolbox.errors import InputError

COUNTS = {"train": 3, "val": 2, "test": 1}
ROBOFLOW_DIRS = {"train": "train", "val": "valid", "test": "test"}


def make_export(root, layout, cfg):
    """A YOLO export: `layout` "roboflow" (train/ valid/ test/, each images/ + labels/) or "ultralytics"
    (images/{train,val,test} + labels/{...}); COUNTS images per split, one box each; `cfg` is data.yaml."""
    for split, n in COUNTS.items():
        for i in range(n):
            if layout == "roboflow":
                image = root / ROBOFLOW_DIRS[split] / "images" / f"{split}{i}.jpg"
            else:
                image = root / "images" / split / f"{split}{i}.jpg"
            write_image(image, (80, 60))
            label = image.parents[1] / "labels" / f"{split}{i}.txt" if layout == "roboflow" else \
                root / "labels" / split / f"{split}{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(f"{i % 2} 0.5 0.5 0.25 0.5\n")
    (root / "data.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return root


def _counts(report):
    a = report["attributes"]
    return {s: a.get(f"{s}_samples") for s in COUNTS}


ELSEWHERE = "/Users/someone/Downloads/set"  # the exporter's machine: no such folder here
CASES = {
    # Roboflow's own data.yaml: '../' relative to the yaml, which is wrong by one level
    "roboflow-dotdot": ("roboflow", {"train": "../train/images", "val": "../valid/images", "test": "../test/images"},
                        {"train": ("../train/images", "train/images", "without its leading '../'"),
                         "val": ("../valid/images", "valid/images", "without its leading '../'"),
                         "test": ("../test/images", "test/images", "without its leading '../'")}),
    # absolute paths of the exporter's machine: the split folders beside data.yaml replace them
    "roboflow-absolute": ("roboflow", {s: f"{ELSEWHERE}/{d}/images" for s, d in ROBOFLOW_DIRS.items()},
                          {s: (f"{ELSEWHERE}/{d}/images", f"{d}/images", "beside the yaml")
                           for s, d in ROBOFLOW_DIRS.items()}),
    # Ultralytics: `path:` of the exporter's machine, splits relative to it
    "ultralytics-path": ("ultralytics", {"path": ELSEWHERE, "train": "images/train", "val": "images/val",
                                         "test": "images/test"},
                         {s: (f"images/{s}", f"images/{s}", "relative to the yaml's folder") for s in COUNTS}),
    # absolute split paths in the Ultralytics layout, with valid/val spelled differently from the folder
    "ultralytics-absolute": ("ultralytics", {"train": f"{ELSEWHERE}/images/train", "valid": f"{ELSEWHERE}/images/val",
                                             "test": f"{ELSEWHERE}/images/test"},
                             {s: (f"{ELSEWHERE}/images/{s}", f"images/{s}", "beside the yaml") for s in COUNTS}),
    # correct paths, relative to a `path:` that exists: found as written, no warning
    "as-written": ("ultralytics", {"path": ".", "train": "images/train", "val": "images/val", "test": "images/test"},
                   {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_split_paths_from_another_machine_are_found(tmp_path, workspace, case):
    layout, paths, replaced = CASES[case]
    src = make_export(tmp_path / "export", layout, {**paths, "nc": 2, "names": ["cell", "dust"]})
    r = convert(src, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert _counts(r) == COUNTS
    assert r["attributes"]["class_names"] == ["cell", "dust"]
    warnings = issues(r, "split_path_replaced", "warnings")
    assert len(warnings) == len(replaced)  # one per replaced path
    for split, (given, used, how) in replaced.items():
        expected = f"the {split} path '{given}' does not exist here; using '{used}' ({how}) instead"
        assert [w for w in warnings if w["problem"] == expected and w["file"] == "data.yaml"], (expected, warnings)
    assert r["warning_counts"] == ({"split_path_replaced": len(replaced)} if replaced else {})


def test_nothing_found_is_an_error_with_a_helpful_message(tmp_path, workspace):
    src = make_export(tmp_path / "export", "roboflow", {"train": f"{ELSEWHERE}/a", "val": f"{ELSEWHERE}/b",
                                                        "names": ["cell"]})
    for d in ROBOFLOW_DIRS.values():  # the images are somewhere no rule looks
        (src / d).rename(src / f"{d}_renamed")
    r = convert(src, workspace=workspace)
    assert not r["check_pass"] and _counts(r) == {"train": 0, "val": 0, "test": None}
    missing = issues(r, "split_missing")
    assert [m["problem"] for m in missing] == [
        f"the train path '{ELSEWHERE}/a' does not exist (relative to the yaml's folder), and no train folder was "
        f"found beside data.yaml either (looked for train/images, images/train)",
        f"the val path '{ELSEWHERE}/b' does not exist (relative to the yaml's folder), and no val folder was found "
        f"beside data.yaml either (looked for val/images, valid/images, validation/images, images/val, "
        f"images/valid, images/validation)"]
    empty = issues(r, "split_empty")
    assert len(empty) == 2
    for e in empty:  # `split` cannot help when no image was found: the message says where to look instead
        assert "toolbox split" not in e["problem"]
        assert "no image was found for any split: check that data.yaml's train/val paths" in e["problem"]


def test_empty_val_with_train_images_still_suggests_split(tmp_path, workspace):
    src = make_export(tmp_path / "export", "ultralytics", {"train": "images/train", "val": "images/val",
                                                           "names": ["cell", "dust"]})
    for p in (src / "images" / "val").iterdir():
        p.unlink()
    r = convert(src, workspace=workspace)
    [e] = issues(r, "split_empty")
    assert e["problem"].startswith("the val split has no images; add some, or run `python -m toolbox split NAME")


@pytest.mark.parametrize("names", [["cell", "dust"], {0: "cell", 1: "dust"}, {"1": "dust", "0": "cell"}])
def test_names_as_list_or_mapping(tmp_path, workspace, names):
    src = make_export(tmp_path / "export", "ultralytics", {"train": "images/train", "val": "images/val",
                                                           "names": names})
    r = convert(src, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert r["attributes"]["class_names"] == ["cell", "dust"]


def test_names_mapping_with_a_gap_and_nc_mismatch(tmp_path, workspace):
    src = make_export(tmp_path / "gap", "ultralytics", {"train": "images/train", "val": "images/val",
                                                        "names": {0: "cell", 2: "dust"}})
    [e] = issues(convert(src, workspace=workspace), "schema")
    assert e["file"] == "data.yaml" and e["problem"].startswith(
        "'names' in data.yaml maps class numbers [0, 2], which are not 0..1 without gaps")
    src = make_export(tmp_path / "nc", "ultralytics", {"train": "images/train", "val": "images/val", "nc": 3,
                                                       "names": ["cell", "dust"]})
    r = convert(src, workspace=workspace)
    assert r["check_pass"] and r["attributes"]["class_names"] == ["cell", "dust"]
    [w] = issues(r, "nc_mismatch", "warnings")
    assert w["problem"] == "nc = 3 but 'names' lists 2 classes (cell, dust): the names are used; correct nc or the names"


def test_archive_yaml_may_not_reach_host_images(tmp_path, workspace):
    """In an archive, a split path pointing at a host folder that exists here is refused, not imported."""
    host = tmp_path / "host_photos"
    write_image(host / "private.jpg")
    src = make_export(tmp_path / "export", "ultralytics", {"train": str(host), "val": "images/val", "names": ["cell"]})
    out = tmp_path / "evil.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    with pytest.raises(InputError, match=rf"evil.zip: data.yaml names the image '{host}/private.jpg', which lies "
                                         r"outside the archive: refused"):
        convert(out, workspace=workspace, name="evil")
    assert not list(workspace.datasets.iterdir())
