"""LabelMe files that carry their image inside (issue 11, item 4): `imageData` (base64) is decoded and
imported when the image file is not there, named beside its JSON with the extension of its real format."""
from __future__ import annotations

import base64
import json
import zipfile

from PIL import Image

from tests.fixtures.data import issues, write_image
from toolbox.data.api import convert

RECT = {"label": "leaf", "points": [[30, 40], [10, 5]], "shape_type": "rectangle"}


def _encoded(path, size, fmt):
    write_image(path, size, fmt=fmt)
    return base64.b64encode(path.read_bytes()).decode("ascii"), path.read_bytes()


def _labelme(path, image_path, image_data, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.4.1", "shapes": [RECT], "imageWidth": w, "imageHeight": h, "imageData": image_data}
    if image_path is not None:
        doc["imagePath"] = image_path
    path.write_text(json.dumps(doc))


def _ann(workspace, name, split):
    return json.loads((workspace.datasets / name / "annotations" / f"instance_{split}.json").read_text())


def _embedded_set(root, tmp_path):
    png, png_bytes = _encoded(tmp_path / "made" / "a.png", (64, 48), "PNG")
    jpg, jpg_bytes = _encoded(tmp_path / "made" / "b.jpg", (50, 40), "JPEG")
    _labelme(root / "train" / "p1.json", None, png, 64, 48)  # imagePath missing: only the embedded image
    _labelme(root / "val" / "p2.json", "p2.jpg", jpg, 50, 40)  # imagePath names a file that is not there
    return png_bytes, jpg_bytes


def test_embedded_images_are_extracted(tmp_path, workspace):
    png_bytes, jpg_bytes = _embedded_set(tmp_path / "lm", tmp_path)
    r = convert(tmp_path / "lm", workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert (r["attributes"]["train_samples"], r["attributes"]["val_samples"]) == (1, 1)
    d = workspace.datasets / "lm"
    train, val = _ann(workspace, "lm", "train"), _ann(workspace, "lm", "val")
    assert train["images"][0]["file_name"] == "train/p1.png"  # its real format, not the default .jpg
    assert val["images"][0]["file_name"] == "val/p2.jpg"
    assert (d / "images" / "train" / "p1.png").read_bytes() == png_bytes
    assert (d / "images" / "val" / "p2.jpg").read_bytes() == jpg_bytes
    with Image.open(d / "images" / "train" / "p1.png") as im:
        assert im.size == (64, 48)
    assert [a["bbox"] for a in train["annotations"]] == [[10.0, 5.0, 20.0, 35.0]]
    [w] = issues(r, "image_embedded", "warnings")
    assert w["file"] == "val/p2.json" and w["problem"] == (
        "the image 'p2.jpg' named by imagePath is not there: the image embedded in imageData is used instead")
    assert r["warning_counts"] == {"image_embedded": 1}  # the one without imagePath needs no warning
    assert not (d / ".embedded").exists() and not (tmp_path / "lm" / "train" / "p1.png").exists()  # user's folder untouched


def test_embedded_images_in_an_archive(tmp_path, workspace):
    _embedded_set(tmp_path / "lm", tmp_path)
    out = tmp_path / "labelme.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted((tmp_path / "lm").rglob("*.json")):
            zf.write(p, p.relative_to(tmp_path / "lm").as_posix())
    r = convert(out, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert (workspace.datasets / "labelme" / "images" / "train" / "p1.png").is_file()


def test_broken_embedded_image_is_one_clear_error(tmp_path, workspace):
    root = tmp_path / "lm"
    write_image(root / "ok.jpg")
    _labelme(root / "ok.json", "ok.jpg", None, 64, 48)
    _labelme(root / "bad.json", None, "this is not base64!", 64, 48)
    _labelme(root / "junk.json", None, base64.b64encode(b"plain text, no picture").decode(), 64, 48)
    r = convert(root, workspace=workspace)
    assert not r["check_pass"] and r["attributes"]["train_samples"] == 1
    errors = {e["file"]: e["problem"] for e in issues(r, "image_unreadable")}
    assert set(errors) == {"bad.json", "junk.json"}
    assert errors["bad.json"].startswith("no image file for bad.json and the image embedded in its imageData cannot "
                                         "be decoded (Error: ")
    assert "UnidentifiedImageError" in errors["junk.json"]
    assert not issues(r, "image_missing")  # one error per file, not two


def test_image_file_wins_over_imagedata(tmp_path, workspace):
    root = tmp_path / "lm"
    other, _ = _encoded(tmp_path / "made" / "x.png", (64, 48), "PNG")
    for split in ("train", "val"):
        write_image(root / split / "p.jpg", (64, 48), color=(10, 200, 10))
        _labelme(root / split / "p.json", "p.jpg", other, 64, 48)  # LabelMe's default: the file and imageData
    r = convert(root, workspace=workspace)
    assert r["check_pass"] and r["warning_counts"] == {}, r["errors"]
    for split in ("train", "val"):
        kept = workspace.datasets / "lm" / "images" / split / "p.jpg"
        assert kept.read_bytes() == (root / split / "p.jpg").read_bytes()
