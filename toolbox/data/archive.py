"""Safe extraction of dataset archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) into the workspace.

An archive from the internet can be hostile. Every member is vetted before it is written: no absolute
paths or drive letters, no `..`, no device files or FIFOs, and no symbolic links at all (zip or tar):
a link's target can only be judged through the links written before it, and a chain of links that
each look harmless by their written path can point a later member at a host file. Datasets hardly
ever hold links, so refusing them (naming the member) is the rule that cannot be got round. A tar
hard link to a regular file of the same archive is written as a copy of that file. The archive's own
top folder (`.`, `./`, as `tar -C DIR -czf x.tgz .` writes) is skipped. Bounds on the total unpacked
size and the number of files are counted on the bytes actually written (a zip's header can lie), so a
decompression bomb stops at the bound. A refused archive raises InputError naming the member; the
caller extracts into a temporary folder, so nothing half-extracted survives.
"""
from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
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


def member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The member's path relative to the destination; None for the archive's own top folder (`.`, `./`,
    which `tar -C DIR -czf x.tgz .` writes); InputError if it could escape the destination."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//"):
        raise InputError(f"{archive.name}: member '{name}' has an absolute path: refused (an archive must only "
                         f"hold relative paths)")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{archive.name}: member '{name}' contains '..' (path traversal): refused")
    if not parts:
        if norm.strip("/") in ("", "."):
            return None
        raise InputError(f"{archive.name}: member '{name}' has an empty path: refused")
    return PurePosixPath(*parts)


def _link_refused(archive: Path, name: str, target: str) -> InputError:
    return InputError(f"{archive.name}: member '{name}' is a symbolic link (to '{target}'): refused, dataset "
                      f"archives may not hold links (archive the files themselves, e.g. zip without --symlinks "
                      f"or tar --dereference)")


def _inside(dest: Path, target: Path) -> bool:
    dest_r = os.path.realpath(dest)
    t = os.path.realpath(target)
    return t == dest_r or t.startswith(dest_r + os.sep)


def _write_stream(stream, target: Path, dest: Path, budget: _Budget, name: str, bar) -> None:
    # No link is ever created by extraction, so this is a second line of defence, not the first.
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
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
            if isinstance(e, InputError) or isinstance(e, OSError) and e.errno is not None:
                raise  # a refusal, or the disk (full, read-only): not the archive's fault
            raise InputError(f"{archive.name}: not a readable zip or tar archive ({e})") from None
    return dest


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{archive.name}: broken zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
        members = []
        for info in infos:  # vet everything before writing anything
            rel = member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _link_refused(archive, info.filename, zf.read(info).decode("utf-8", "replace")[:200])
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                raise InputError(f"{archive.name}: member '{info.filename}' is a device file or FIFO: refused")
            if rel is None:
                if not info.is_dir():
                    raise InputError(f"{archive.name}: member '{info.filename}' has an empty path: refused")
                continue
            members.append((info, rel))
        declared = sum(i.file_size for i in infos)
        if declared > budget.max_bytes:
            raise InputError(f"{archive.name}: declares {_size(declared)} unpacked, more than the bound of "
                             f"{_size(budget.max_bytes)}: refused; raise TOOLBOX_MAX_EXTRACT_BYTES if it is genuine")
        with tqdm(total=declared, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                  disable=declared < PROGRESS_FROM, leave=False) as bar:
            for info, rel in members:
                target = dest / rel
                budget.file(info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                try:
                    with zf.open(info) as stream:
                        _write_stream(stream, target, dest, budget, info.filename, bar)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
                    if isinstance(e, InputError):
                        raise
                    raise InputError(f"{archive.name}: member '{info.filename}' is corrupt ({e})") from None


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    """Stream the members in order. Symbolic links are refused. A hard link is accepted only when it
    names a regular file written earlier from the same archive (GNU tar stores a second name of one
    inode that way, e.g. a folder holding hard-linked images): its bytes are copied, so no link exists
    in the workspace and nothing can be reached through one."""
    size = archive.stat().st_size
    written: dict[PurePosixPath, Path] = {}  # regular-file members already extracted, by member path
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                 disable=size < PROGRESS_FROM, leave=False) as bar:
        for member in tar:
            rel = member_path(member.name, archive)
            if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                raise InputError(f"{archive.name}: member '{member.name}' is a device file or FIFO: refused")
            if member.issym():
                raise _link_refused(archive, member.name, member.linkname)
            if rel is None:
                if not member.isdir():
                    raise InputError(f"{archive.name}: member '{member.name}' has an empty path: refused")
                continue  # the top folder itself ('.', './')
            budget.file(member.name)
            target = dest / rel
            if member.islnk():
                src = written.get(_link_key(member.linkname, archive))
                if src is None:
                    raise InputError(f"{archive.name}: member '{member.name}' is a hard link to "
                                     f"'{member.linkname}', which is not a regular file earlier in the archive: "
                                     f"refused")
                with open(src, "rb") as stream:
                    _write_stream(stream, target, dest, budget, member.name, _NoProgress())
                written[rel] = target
                continue
            if member.isdir():
                if target.is_file():
                    raise InputError(f"{archive.name}: folder '{member.name}' has the same path as a file: refused")
                target.mkdir(parents=True, exist_ok=True)
                written.pop(rel, None)
                continue
            if not member.isfile():
                raise InputError(f"{archive.name}: member '{member.name}' has an unsupported type: refused")
            stream = tar.extractfile(member)
            if stream is None:
                continue
            with stream:
                _write_stream(stream, target, dest, budget, member.name, _RawProgress(bar, raw))
            written[rel] = target


def _link_key(linkname: str, archive: Path) -> PurePosixPath | None:
    """A hard link's target as a member path, or None when it cannot name a member (absolute, `..`)."""
    try:
        return member_path(linkname, archive)
    except InputError:
        return None


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
