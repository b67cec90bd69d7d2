"""Links inside dataset archives (issue 11, item 5): every symbolic link is refused by name, in zip
and tar, so no chain of links can carry a later member outside the workspace; a tar hard link to a
regular file of the same archive becomes a plain copy. Each case is built here, beside a real
dataset that would otherwise import."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import pytest

from tests.fixtures.data import make_coco_dataset
from toolbox.data import archive
from toolbox.data.api import check
from toolbox.errors import InputError

DEPTH = 40  # the chain: 40 nested folders, so the first link's 40 `..` land back at images/
DEEP = "images/" + "/".join(f"q{i}" for i in range(1, DEPTH + 1))


def _host_secret(tmp_path):
    secret = tmp_path / "host" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(b"host file, must never be reachable from the workspace")
    return secret


def _chain(secret):
    """The two links of the issue: each stays inside by its written path; created in order, the second
    lands at images/leak.jpg and points at the host file."""
    first = (f"{DEEP}/l1", "../" * DEPTH)
    second = (f"{DEEP}/l1/leak.jpg", "../" * (DEPTH + 2) + str(secret).lstrip("/"))
    return [first, second]


def _dataset_files(tmp_path):
    src = make_coco_dataset(tmp_path / "set")
    return [(p.relative_to(src).as_posix(), p.read_bytes()) for p in sorted(src.rglob("*")) if p.is_file()]


def _zip(out, files, links):
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files:
            zf.writestr(name, data)
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so the mode bits below are read
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return out


def _tar(out, files, members):
    """`members`: (name, kind, target) with kind tarfile.SYMTYPE or LNKTYPE, written after `files`."""
    with tarfile.open(out, "w:gz") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return out


def _links_under(root):
    return [p for p in root.rglob("*") if p.is_symlink()]


def _refused(tmp_path, workspace, path, match):
    with pytest.raises(InputError, match=match):
        check(path, workspace=workspace, name="evil")
    assert not list(workspace.datasets.iterdir())  # neither the dataset nor a temporary folder survives
    assert not _links_under(workspace.root)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_two_link_chain_is_refused_naming_the_first_link(tmp_path, workspace, kind):
    secret = _host_secret(tmp_path)
    links = _chain(secret)
    # the attack's premise: by its written path, each link stays inside the destination
    for name, target in links:
        landed = os.path.normpath(os.path.join("/dest", os.path.dirname(name), target))
        assert landed.startswith("/dest/")
    files = _dataset_files(tmp_path)
    out = _zip(tmp_path / "evil.zip", files, links) if kind == "zip" else \
        _tar(tmp_path / "evil.tar.gz", files, [(n, tarfile.SYMTYPE, t) for n, t in links])
    _refused(tmp_path, workspace, out, f"member '{DEEP}/l1' is a symbolic link .*: refused, dataset archives "
                                       f"may not hold links")


def test_hard_link_to_a_symlink_of_the_same_archive_is_refused(tmp_path, workspace):
    secret = _host_secret(tmp_path)
    out = _tar(tmp_path / "evil.tar.gz", _dataset_files(tmp_path),
               [("images/alias.jpg", tarfile.SYMTYPE, "../" * 30 + str(secret).lstrip("/")),
                ("images/copy.jpg", tarfile.LNKTYPE, "images/alias.jpg")])
    _refused(tmp_path, workspace, out, "member 'images/alias.jpg' is a symbolic link")
    # the hard link alone, pointing at a member that is no regular file (a folder), is refused by its name
    out = _tar(tmp_path / "evil2.tar.gz", _dataset_files(tmp_path), [("images/copy.jpg", tarfile.LNKTYPE, "images")])
    _refused(tmp_path, workspace, out, "member 'images/copy.jpg' is a hard link to 'images', which is not a "
                                       "regular file earlier in the archive: refused")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_link_to_a_folder_then_a_file_written_through_it_is_refused(tmp_path, workspace, kind):
    files = _dataset_files(tmp_path)
    through = ("images/sub/x.jpg", b"written through the link")
    if kind == "zip":
        out = tmp_path / "evil.zip"
        with zipfile.ZipFile(out, "w") as zf:
            for name, data in files:
                zf.writestr(name, data)
            info = zipfile.ZipInfo("images/sub")
            info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../annotations")
            zf.writestr(*through)
    else:
        out = tmp_path / "evil.tar.gz"
        with tarfile.open(out, "w:gz") as tf:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("images/sub")
            link.type, link.linkname = tarfile.SYMTYPE, "../annotations"
            tf.addfile(link)
            info = tarfile.TarInfo(through[0])
            info.size = len(through[1])
            tf.addfile(info, io.BytesIO(through[1]))
    _refused(tmp_path, workspace, out, r"member 'images/sub' is a symbolic link \(to '../annotations'\)")


def test_tar_hard_links_to_earlier_files_become_copies(tmp_path, workspace):
    """GNU tar and tarfile store a second name of one inode as a hard link (this toolbox's own datasets
    hard-link images/ to source/): such an archive imports, each name a file of its own."""
    src = make_coco_dataset(tmp_path / "set")
    os.link(src / "images" / "a.jpg", src / "a_again.jpg")
    out = tmp_path / "linked.tar"
    with tarfile.open(out, "w") as tf:
        tf.add(src, arcname="set")
    with tarfile.open(out) as tf:
        kinds = {m.name: m.type for m in tf.getmembers()}
    assert tarfile.LNKTYPE in (kinds["set/a_again.jpg"], kinds["set/images/a.jpg"])  # the case is really built
    dest = archive.extract(out, tmp_path / "x")
    copies = [dest / "set" / "a_again.jpg", dest / "set" / "images" / "a.jpg"]
    assert all(p.is_file() and not p.is_symlink() for p in copies)
    assert copies[0].read_bytes() == copies[1].read_bytes() == (src / "a_again.jpg").read_bytes()
    assert os.stat(copies[0]).st_ino != os.stat(copies[1]).st_ino  # two files, not one inode
    r = check(out, workspace=workspace)
    assert r["check_pass"], r["errors"]
    assert (r["attributes"]["train_samples"], r["attributes"]["val_samples"]) == (2, 1)
    assert not _links_under(workspace.root)


def test_gnu_tar_hard_links_of_dot_archive(tmp_path, workspace):
    """The same with the real `tar -C DIR -cf x.tar .` (linknames start with './')."""
    import subprocess

    from tests.conftest import require_tool

    src = make_coco_dataset(tmp_path / "set")
    os.link(src / "images" / "a.jpg", src / "images" / "a_again.jpg")
    out = tmp_path / "gnu.tar"
    subprocess.run([require_tool("tar"), "-C", str(src), "-cf", str(out), "."], check=True)
    with tarfile.open(out) as tf:
        assert [m.linkname for m in tf.getmembers() if m.islnk()] in (["./images/a.jpg"], ["./images/a_again.jpg"])
    dest = archive.extract(out, tmp_path / "x")
    assert (dest / "images" / "a_again.jpg").read_bytes() == (dest / "images" / "a.jpg").read_bytes()
    assert not _links_under(dest)


def _cli_refuses(capsys, workspace, path):
    from toolbox.cli import main

    code = main(["--workspace", str(workspace.root), "check", str(path), "--name", "evil"])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert not (workspace.datasets / "evil").exists() and not _links_under(workspace.root)
    return lines[0]


def test_cli_refuses_each_hostile_archive_in_one_line(tmp_path, workspace, capsys):
    secret = _host_secret(tmp_path)
    files = _dataset_files(tmp_path)
    chain = _chain(secret)
    cases = {
        _zip(tmp_path / "chain.zip", files, chain): f"member '{DEEP}/l1' is a symbolic link",
        _tar(tmp_path / "chain.tgz", files, [(n, tarfile.SYMTYPE, t) for n, t in chain]):
            f"member '{DEEP}/l1' is a symbolic link",
        _tar(tmp_path / "hard.tar.gz", files, [("images/x.jpg", tarfile.LNKTYPE, str(secret))]):
            "member 'images/x.jpg' is a hard link to",
    }
    for path, expected in cases.items():
        assert expected in _cli_refuses(capsys, workspace, path)
