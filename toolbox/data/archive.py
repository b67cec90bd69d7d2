"""Safe extraction of dataset archives (.zip, .tar, .tar.gz, .tgz) into the workspace.

An archive from the internet can be hostile. Every member is vetted before anything is written:
no absolute paths or drive letters, no `..`, no device files or FIFOs, links only when they stay inside
the destination (zip symlinks and tar hard/soft links alike), and bounds on the total unpacked size and
the number of files, counted on the bytes actually written (a zip's header can lie), so a
decompression bomb stops at the bound. A refused archive raises InputError naming the member; the
caller extracts into a temporary folder, so nothing half-extracted survives.
"""
from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..errors import InputError

MAX_BYTES = int(float(os.environ.get("TOOLBOX_MAX_EXTRACT_BYTES", 64 * 1024 ** 3)))
MAX_FILES = int(os.environ.get("TOOLBOX_MAX_EXTRACT_FILES", 2_000_000))
CHUNK = 1 << 20
PROGRESS_FROM = 64 * 1024 ** 2  # archives smaller than this extract without a progress bar


class _Budget:
    """Counts files and written bytes against the bounds."""

    def __init__(self, archive: Path, max_bytes: int, max_files: int):
        self.archive, self.max_bytes, self.max_files = archive, max_bytes, max_files
        self.bytes = 0
        self.files = 0

    def file(self, name: str) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise InputError(f"{self.archive.name}: more than {self.max_files:,} files (at '{name}'): refused as a "
                             f"possible archive bomb; raise TOOLBOX_MAX_EXTRACT_FILES if the archive is genuine")

    def add(self, n: int, name: str) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise InputError(f"{self.archive.name}: unpacks to more than {_size(self.max_bytes)} (at '{name}'): "
                             f"refused as a possible decompression bomb; raise TOOLBOX_MAX_EXTRACT_BYTES if the "
                             f"archive is genuine")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def safe_member_path(name: str, archive: Path) -> PurePosixPath:
    """The member's path relative to the destination, or InputError if it could escape it."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//"):
        raise InputError(f"{archive.name}: member '{name}' has an absolute path: refused (an archive must only "
                         f"hold relative paths)")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{archive.name}: member '{name}' contains '..' (path traversal): refused")
    if not parts:
        raise InputError(f"{archive.name}: member '{name}' has an empty path: refused")
    return PurePosixPath(*parts)


def _inside(dest: Path, target: Path) -> bool:
    dest_r = os.path.realpath(dest)
    t = os.path.realpath(target)
    return t == dest_r or t.startswith(dest_r + os.sep)


def _link_target_ok(dest: Path, rel: PurePosixPath, link: str) -> bool:
    if link.startswith("/") or link.replace("\\", "/").startswith("/") or (len(link) > 1 and link[1] == ":"):
        return False
    resolved = os.path.normpath(os.path.join(str(dest), str(rel.parent), link))
    d = os.path.normpath(str(dest))
    return resolved == d or resolved.startswith(d + os.sep)


def _write_stream(stream, target: Path, dest: Path, budget: _Budget, name: str, bar) -> None:
    if not _inside(dest, target.parent):
        raise InputError(f"{budget.archive.name}: member '{name}' would be written through a link outside the "
                         f"destination: refused")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists() and not target.is_file():
        raise InputError(f"{budget.archive.name}: member '{name}' would overwrite a link or folder: refused")
    with open(target, "wb") as out:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            budget.add(len(chunk), name)
            out.write(chunk)
            bar.update(len(chunk))


def extract(archive: str | os.PathLike, dest: str | os.PathLike, max_bytes: int | None = None,
            max_files: int | None = None) -> Path:
    """Extract `archive` into `dest` (created) after vetting every member; return `dest`."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, MAX_BYTES if max_bytes is None else max_bytes,
                     MAX_FILES if max_files is None else max_files)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, budget)
    else:
        try:
            _extract_tar(archive, dest, budget)
        except tarfile.TarError as e:
            raise InputError(f"{archive.name}: not a readable zip or tar archive ({e})") from None
    return dest


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{archive.name}: broken zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
        links = []
        for info in infos:  # vet everything before writing anything
            rel = safe_member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                links.append((info, rel))
            elif mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                raise InputError(f"{archive.name}: member '{info.filename}' is a device file or FIFO: refused")
        declared = sum(i.file_size for i in infos)
        if declared > budget.max_bytes:
            raise InputError(f"{archive.name}: declares {_size(declared)} unpacked, more than the bound of "
                             f"{_size(budget.max_bytes)}: refused; raise TOOLBOX_MAX_EXTRACT_BYTES if it is genuine")
        with tqdm(total=declared, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                  disable=declared < PROGRESS_FROM, leave=False) as bar:
            for info in infos:
                rel = safe_member_path(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    continue
                target = dest / rel
                if info.is_dir():
                    budget.file(info.filename)
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                budget.file(info.filename)
                try:
                    with zf.open(info) as stream:
                        _write_stream(stream, target, dest, budget, info.filename, bar)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
                    if isinstance(e, InputError):
                        raise
                    raise InputError(f"{archive.name}: member '{info.filename}' is corrupt ({e})") from None
        for info, rel in links:  # links last, so nothing is ever written through one
            target_text = zf.read(info).decode("utf-8", "replace")
            if not _link_target_ok(dest, rel, target_text):
                raise InputError(f"{archive.name}: link '{info.filename}' points outside the archive "
                                 f"('{target_text}'): refused")
            budget.file(info.filename)
            _check_link_slot(dest, rel, info.filename, archive)
            os.symlink(target_text, dest / rel)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    size = archive.stat().st_size
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                 disable=size < PROGRESS_FROM, leave=False) as bar:
        deferred = []
        for member in tar:
            rel = safe_member_path(member.name, archive)
            budget.file(member.name)
            if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                raise InputError(f"{archive.name}: member '{member.name}' is a device file or FIFO: refused")
            if member.issym() or member.islnk():
                link = member.linkname
                ok = _link_target_ok(dest, rel, link) if member.issym() else \
                    _link_target_ok(dest, PurePosixPath("x"), str(safe_member_path(link, archive)))
                if not ok:
                    raise InputError(f"{archive.name}: link '{member.name}' points outside the archive "
                                     f"('{link}'): refused")
                deferred.append((member, rel))
                continue
            target = dest / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise InputError(f"{archive.name}: member '{member.name}' has an unsupported type: refused")
            stream = tar.extractfile(member)
            if stream is None:
                continue
            with stream:
                _write_stream(stream, target, dest, budget, member.name, _RawProgress(bar, raw))
        for member, rel in deferred:
            target = dest / rel
            _check_link_slot(dest, rel, member.name, archive)
            if member.issym():
                os.symlink(member.linkname, target)
            else:  # hard link to an already extracted member: copy its bytes (no shared inode with the source)
                src = dest / safe_member_path(member.linkname, archive)
                if not src.is_file() or not _inside(dest, src):
                    raise InputError(f"{archive.name}: hard link '{member.name}' points at '{member.linkname}', "
                                     f"which is not a file of the archive: refused")
                with open(src, "rb") as stream:
                    _write_stream(stream, target, dest, budget, member.name, _NoProgress())


def _check_link_slot(dest: Path, rel: PurePosixPath, name: str, archive: Path) -> None:
    """A link is created last: its place must be free and its folder inside the destination."""
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(dest, target.parent):
        raise InputError(f"{archive.name}: link '{name}' would be created through a link outside the destination: refused")
    if os.path.lexists(target):
        raise InputError(f"{archive.name}: link '{name}' has the same path as another member: refused")


class _RawProgress:
    """tqdm driven by the position in the compressed file (the only size known for a .tar.gz)."""

    def __init__(self, bar, raw):
        self.bar, self.raw = bar, raw

    def update(self, _n: int) -> None:
        pos = self.raw.tell()
        if pos > self.bar.n:
            self.bar.update(pos - self.bar.n)


class _NoProgress:
    def update(self, _n: int) -> None:
        pass
