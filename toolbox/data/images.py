"""Looking at image files and bringing them into the workspace.

Every image is opened once: Pillow decodes its header (size, format) and its EXIF orientation. On
import, an image whose EXIF orientation is not "upright" is written rotated with the tag removed, so
every later reader (training, predict, the C++ demos) sees what the annotator saw; any other image
is hard-linked (same file system) or copied. The user's files are only ever read.
"""
from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from .check import ImageInfo
from .source import Source, Split, relative

EXIF_ORIENTATION = 0x0112
SWAPS_AXES = {5, 6, 7, 8}


def probe_file(path: Path | None) -> ImageInfo:
    """Size (after EXIF orientation), raw size and orientation of one image, or why it failed."""
    if path is None or not path.is_file():
        return ImageInfo("missing")
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
                orientation = 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return ImageInfo("unreadable", reason=f"{type(e).__name__}: {e}"[:200])
    if orientation not in range(1, 9):
        orientation = 1
    ow, oh = (h, w) if orientation in SWAPS_AXES else (w, h)
    return ImageInfo("ok", ow, oh, w, h, orientation)


def place(src: Path, dst: Path, orientation: int) -> None:
    """Put `src` at `dst` upright: rotated copy if EXIF says so, else hard link, else copy.

    Two splits may list the same file, and the scanner's threads may place it at the same moment:
    each writes its own temporary name and renames it over `dst`, so the loser of that race
    replaces the file with identical bytes instead of failing (a bare `os.link` then raised
    FileExistsError, and the copy fallback SameFileError), and `dst` is never a partial copy.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return  # the same file listed by two splits, already placed
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        if orientation != 1:
            with Image.open(src) as im:
                fmt = im.format or "JPEG"
                upright = ImageOps.exif_transpose(im)
                kwargs = {"quality": 95} if fmt == "JPEG" else {}
                exif = upright.info.get("exif")
                if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
                    kwargs["exif"] = exif
                upright.save(tmp, format=fmt, **kwargs)
        else:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copy2(src, tmp)
        os.replace(tmp, dst)  # a no-op when both are links to one file: the finally removes tmp
    finally:
        tmp.unlink(missing_ok=True)


class ImageScanner:
    """Probes (and, with `images_out`, imports) every image of a Source, in a few threads.

    Used as the checker's `probe(split, index)`: `scan()` first looks at all files in parallel with a
    progress bar, then the checker reads the cached results.
    """

    def __init__(self, source: Source, images_out: Path | None = None, workers: int = 4):
        self.source = source
        self.images_out = images_out
        self.workers = workers
        self.results: dict[tuple[str, str], ImageInfo] = {}  # (split, file_name) -> info

    def _one(self, split: Split, i: int) -> ImageInfo:
        path = split.image_path(i)
        info = probe_file(path)
        info.file = relative(path, self.source.root) if path is not None else ""
        if info.status == "ok" and self.images_out is not None:
            name = split.coco["images"][i].get("file_name")
            try:
                place(path, self.images_out / name, info.orientation)
            except (OSError, ValueError) as e:
                info.status, info.reason = "unreadable", f"could not import it: {e}"[:200]
        return info

    def scan(self) -> None:
        from .check import safe_relative

        jobs = []
        for split in self.source.splits.values():
            images = split.coco.get("images") if isinstance(split.coco, dict) else None
            if not isinstance(images, list):
                continue
            for i, im in enumerate(images):
                fn = im.get("file_name") if isinstance(im, dict) else None
                if isinstance(fn, str) and fn and safe_relative(fn):
                    jobs.append((split, i))
        if not jobs:
            return
        bar = tqdm(total=len(jobs), desc="images", unit="img", disable=len(jobs) < 500, leave=False)
        with ThreadPoolExecutor(self.workers) as pool:
            for (split, i), info in zip(jobs, pool.map(lambda j: self._one(*j), jobs)):
                self.results[self._key(split, i)] = info
                bar.update()
        bar.close()

    @staticmethod
    def _key(split: Split, i: int) -> tuple[str, str]:
        return split.name, str(split.coco["images"][i].get("file_name"))

    def __call__(self, split: Split, i: int) -> ImageInfo:
        info = self.results.get(self._key(split, i))
        if info is None:
            info = self._one(split, i)
            self.results[self._key(split, i)] = info
        return info
