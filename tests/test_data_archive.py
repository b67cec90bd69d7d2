"""Archives: good ones import into datasets/<name>/source/; hostile ones built here are refused
(path traversal, absolute paths, links escaping, device files, a decompression bomb, too many files)
and leave nothing behind."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import subprocess

import pytest

from tests.conftest import SHARED, require, require_tool, shared_path
from tests.fixtures.data import make_coco_dataset
from toolbox.data import archive
from toolbox.data.api import check
from toolbox.errors import InputError


def _zip_folder(folder, out, prefix=""):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return out


TAR_MODES = {"tar.gz": "w:gz", "tgz": "w:gz", "tar": "w", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}


@pytest.mark.parametrize("kind", ["zip", *TAR_MODES])
def test_good_archive_is_imported(tmp_path, workspace, kind):
    src = make_coco_dataset(tmp_path / "pets")
    out = tmp_path / f"pets_v2.{kind}"
    if kind == "zip":
        _zip_folder(src, out, prefix="pets/")
    else:
        with tarfile.open(out, TAR_MODES[kind]) as tf:
            tf.add(src, arcname="pets")
    r = check(out, workspace=workspace)
    assert r["check_pass"], r["errors"]
    d = workspace.datasets / "pets_v2"  # the archive's stem
    assert (d / "source" / "pets" / "annotations" / "instance_train.json").is_file()
    assert (d / "images" / "a.jpg").is_file() and (d / "annotations" / "instance_val.json").is_file()


def _tar_dot(folder, out):
    """The usual Linux way: `tar -C DIR -czf out .` (members `./`, `./annotations/...`)."""
    subprocess.run([require_tool("tar"), "-C", str(folder), "-czf", str(out), "."], check=True)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names[0] in (".", "./") and all(n.startswith("./") for n in names[1:])  # the case is really built
    return out


def test_tar_of_dot_is_imported(tmp_path, workspace):
    src = make_coco_dataset(tmp_path / "pets")
    r = check(_tar_dot(src, tmp_path / "pets.tgz"), workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert (r["attributes"]["train_samples"], r["attributes"]["val_samples"]) == (2, 1)
    assert (workspace.datasets / "pets" / "source" / "annotations" / "instance_train.json").is_file()


def test_top_folder_member_must_be_a_folder(tmp_path, workspace):
    out = tmp_path / "dot.tar"
    with tarfile.open(out, "w") as tf:
        info = tarfile.TarInfo("./")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"pwned"))
    _refused(tmp_path, workspace, out, "member './' has an empty path: refused")


def test_bccd_tar_of_dot_imports_all_splits(tmp_path, workspace):
    require((SHARED / "data" / "BCCD_voc").is_dir(), f"{SHARED}/data/BCCD_voc is absent")  # CI=true: a failure
    bccd = shared_path("data", "BCCD_voc")
    r = check(_tar_dot(bccd, tmp_path / "x.tgz"), workspace=workspace)
    a = r["attributes"]
    assert r["dataset_path"] == "datasets/x" and a["class_names"] == ["Platelets", "RBC", "WBC"]
    assert (a["train_samples"], a["val_samples"], a["test_samples"]) == (205, 87, 72)
    assert {e["code"] for e in r["errors"]} == {"bbox_degenerate"}  # BCCD's two known zero-size boxes, nothing else


def test_non_tar_compressed_file_is_refused(tmp_path, workspace):
    out = tmp_path / "notes.tar.xz"
    import lzma

    out.write_bytes(lzma.compress(b"not a tar archive at all" * 40))
    _refused(tmp_path, workspace, out, "notes.tar.xz: not a readable zip or tar archive")


def _refused(tmp_path, workspace, path, match):
    with pytest.raises(InputError, match=match):
        check(path, workspace=workspace, name="evil")
    assert not (workspace.datasets / "evil").exists()
    assert not [p for p in workspace.datasets.iterdir()]  # no temporary leftovers either
    assert not (tmp_path / "evil.txt").exists() and not (workspace.root / "evil.txt").exists()


def test_zip_path_traversal(tmp_path, workspace):
    out = _zip_folder(make_coco_dataset(tmp_path / "d"), tmp_path / "a.zip")
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("../../evil.txt", "pwned")
    _refused(tmp_path, workspace, out, r"member '../../evil.txt' contains '..' \(path traversal\): refused")


def test_zip_absolute_path(tmp_path, workspace):
    out = tmp_path / "a.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo("placeholder")
        info.filename = "/tmp/evil.txt"  # ZipInfo() would strip the slash
        zf.writestr(info, "pwned")
    _refused(tmp_path, workspace, out, "member '/tmp/evil.txt' has an absolute path: refused")


def test_tar_absolute_path_and_traversal(tmp_path, workspace):
    for name, match in (("/etc/evil.txt", "absolute path"), ("a/../../evil.txt", "path traversal")):
        out = tmp_path / "t.tar"
        with tarfile.open(out, "w") as tf:
            info = tarfile.TarInfo(name)
            info.size = 5
            tf.addfile(info, io.BytesIO(b"pwned"))
        _refused(tmp_path, workspace, out, match)


def test_tar_symlink_escape(tmp_path, workspace):
    out = tmp_path / "t.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        link = tarfile.TarInfo("data/images")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc"
        tf.addfile(link)
        f = tarfile.TarInfo("data/images/evil.txt")
        f.size = 5
        tf.addfile(f, io.BytesIO(b"pwned"))
    _refused(tmp_path, workspace, out,
             r"member 'data/images' is a symbolic link \(to '../../../../etc'\): refused, dataset archives may not hold links")


def test_tar_absolute_symlink_and_hardlink_escape(tmp_path, workspace):
    for kind, target, match in ((tarfile.SYMTYPE, "/etc/passwd", "member 'x/passwd' is a symbolic link"),
                                (tarfile.LNKTYPE, "../outside.txt", r"member 'x/passwd' is a hard link to '../outside.txt', "
                                 r"which is not a regular file earlier in the archive: refused"),
                                (tarfile.LNKTYPE, "/etc/passwd", "member 'x/passwd' is a hard link to '/etc/passwd'")):
        out = tmp_path / "t.tar"
        with tarfile.open(out, "w") as tf:
            link = tarfile.TarInfo("x/passwd")
            link.type, link.linkname = kind, target
            tf.addfile(link)
        _refused(tmp_path, workspace, out, match)


def test_zip_symlink_escape(tmp_path, workspace):
    out = tmp_path / "a.zip"
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("d/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../../../home")
    _refused(tmp_path, workspace, out, r"member 'd/link' is a symbolic link \(to '../../../../home'\): refused")


def test_tar_device_file(tmp_path, workspace):
    out = tmp_path / "t.tar"
    with tarfile.open(out, "w") as tf:
        dev = tarfile.TarInfo("dev/sda")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 8, 0
        tf.addfile(dev)
    _refused(tmp_path, workspace, out, "member 'dev/sda' is a device file or FIFO: refused")


def test_decompression_bomb_stopped_by_the_size_bound(tmp_path, workspace, monkeypatch):
    monkeypatch.setattr(archive, "MAX_BYTES", 4 * 1024 ** 2)
    zeros = b"\0" * (1 << 20)
    out = tmp_path / "bomb.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.bin", "w", force_zip64=True) as f:
        for _ in range(32):  # 32 MiB of zeros, ~32 KiB compressed
            f.write(zeros)
    assert out.stat().st_size < 200_000
    _refused(tmp_path, workspace, out, r"unpacks to more than 4.0 MiB|declares 32.0 MiB unpacked")
    # a zip whose headers lie about the size passes the declared-size test but never unpacks more than
    # it declares: Python's zip reader stops there and the CRC check refuses the member
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", zeros * 32)
    raw = bytearray(liar.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.index(sig) + offset
        raw[at:at + 4] = (1000).to_bytes(4, "little")
    liar.write_bytes(bytes(raw))
    _refused(tmp_path, workspace, liar, r"member 'bomb.bin' is corrupt")
    # tar.gz bomb: streamed, counted on the way
    tgz = tmp_path / "bomb.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("bomb.bin")
        info.size = 32 * (1 << 20)
        tf.addfile(info, io.BytesIO(zeros * 32))
    _refused(tmp_path, workspace, tgz, r"unpacks to more than 4.0 MiB \(at 'bomb.bin'\)")


def test_file_count_bound(tmp_path, workspace, monkeypatch):
    monkeypatch.setattr(archive, "MAX_FILES", 5)
    out = tmp_path / "many.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(10):
            zf.writestr(f"f{i}.txt", "x")
    _refused(tmp_path, workspace, out, r"more than 5 files")


def test_not_an_archive(tmp_path, workspace):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(os.urandom(100))
    _refused(tmp_path, workspace, bad, "not a readable zip or tar archive")
