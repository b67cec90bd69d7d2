"""Dataset names derived from folders and archives that are not ASCII (issue 11, item 3), by the rule
of CONTRACTS.md (`check --name` default), printed by the CLI; Unicode file names inside keep working."""
from __future__ import annotations

import hashlib
import json
import unicodedata
import zipfile

import pytest

from tests.fixtures.data import coco_dict, make_coco_dataset
from toolbox.cli import main
from toolbox.data.importer import default_name, usable_name

UNICODE_IMAGE = "图片 1.jpg"  # a space and Chinese inside the dataset too


def _chinese_set(root):
    cats = ((1, "红细胞"), (2, "dog"))
    train = coco_dict([(1, UNICODE_IMAGE, 64, 48), (2, "b.jpg", 64, 48)],
                      [(1, 1, 1, [4, 4, 20, 20]), (2, 2, 2, [10, 8, 30, 30])], categories=cats)
    val = coco_dict([(1, "c.jpg", 64, 48)], [(1, 1, 1, [0, 0, 64, 48])], categories=cats)
    return make_coco_dataset(root, train=train, val=val)


def _cli(capsys, workspace, *argv):
    code = main(["--workspace", str(workspace.root), *argv])
    return code, capsys.readouterr()


def test_chinese_folder_with_a_space_imports_as_the_contract_name(tmp_path, workspace, capsys):
    src = _chinese_set(tmp_path / "数据 集")
    code, out = _cli(capsys, workspace, "check", str(src))
    assert code == 0, out.out + out.err
    assert out.out.splitlines()[0] == "dataset name: 数据_集 (pass --name to choose another)"
    d = workspace.datasets / "数据_集"
    report = json.loads((d / "check_dataset_result.json").read_text(encoding="utf-8"))
    assert report["dataset_path"] == "datasets/数据_集" and report["attributes"]["class_names"] == ["红细胞", "dog"]
    train = json.loads((d / "annotations" / "instance_train.json").read_text(encoding="utf-8"))
    assert train["images"][0]["file_name"] == UNICODE_IMAGE and (d / "images" / UNICODE_IMAGE).is_file()


def test_chinese_archive_name(tmp_path, workspace, capsys):
    src = _chinese_set(tmp_path / "src")
    out = tmp_path / "血细胞 数据.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    code, printed = _cli(capsys, workspace, "convert", str(out))
    assert code == 0 and printed.out.startswith("dataset name: 血细胞_数据 ")
    assert (workspace.datasets / "血细胞_数据" / "images" / UNICODE_IMAGE).is_file()


@pytest.mark.parametrize("text,expected", [
    ("数据 集", "数据_集"),
    ("my set (v2)", "my_set__v2_"),
    ("Ünïcödé-1.2", "Ünïcödé-1.2"),
    (unicodedata.normalize("NFD", "café"), "café"),  # macOS writes names decomposed
    (".hidden-set", "hidden-set"),
    ("набор данных", "набор_данных"),
    ("!!! ???", None),
    ("...", None),
])
def test_usable_name(text, expected):
    assert usable_name(text) == expected


def test_nothing_usable_falls_back_to_a_hash_of_the_path(tmp_path, workspace, capsys):
    src = make_coco_dataset(tmp_path / "!!!")
    expected = "dataset-" + hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:8]
    assert default_name(src.resolve()) == expected
    code, out = _cli(capsys, workspace, "check", str(src))
    assert code == 0 and out.out.startswith(f"dataset name: {expected} ")
    assert (workspace.datasets / expected / "check_dataset_result.json").is_file()


def test_an_unusable_explicit_name_is_a_usage_error_with_a_suggestion(tmp_path, workspace, capsys):
    src = make_coco_dataset(tmp_path / "d")
    code, out = _cli(capsys, workspace, "check", str(src), "--name", "my set")
    assert code == 2 and "dataset name 'my set' is not usable as a folder name" in out.err
    assert "e.g. --name my_set" in out.err and "Traceback" not in out.err
    assert not list(workspace.datasets.iterdir())
