"""Import a dataset into the workspace and check it: the one path behind `check` and `convert`.

PATH (a folder or an archive) → datasets/<name>/ in PaddleX's COCO layout:
  source/ (archives only: the safely extracted archive), images/ (upright copies or hard links),
  annotations/instance_{train,val[,test]}.json, check_dataset_result.json, check/.
The whole folder is built under a temporary name and renamed into place (toolbox.fileio.atomic_dir),
so an interrupted import leaves the previous dataset (or nothing), never half of one. The user's
folder is only read. A dataset already in the workspace is checked in place.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UsageError
from ..fileio import atomic_dir, write_json
from ..workspace import Workspace
from . import formats
from .check import CheckResult, check_source, listed
from .fix import apply_fix
from .images import ImageScanner
from .report import REPORT_NAME, build_report, draw_histogram, draw_samples, write_report
from .source import SPLITS, Source

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
NAME_RE = re.compile(r"^[\w\u4e00-\u9fff][\w.\-\u4e00-\u9fff]*$")


@dataclass
class Outcome:
    report: dict
    dataset_dir: Path


def archive_stem(path: Path) -> str | None:
    low = path.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if low.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name in (".", ".."):
        hint = usable_name(name)
        raise UsageError(f"dataset name '{name}' is not usable as a folder name: use letters, digits, '_', '-' "
                         f"and '.', starting with a letter or digit"
                         + (f" (e.g. --name {hint})" if hint else " (pass another --name)"))
    return name


def usable_name(text: str) -> str | None:
    """`text` made usable as a dataset name (CONTRACTS.md, `check --name`): Unicode letters and digits,
    '_', '-' and '.' kept, spaces and anything else → '_' (after NFC, so a macOS-decomposed 'é' stays a
    letter); leading '.' and '-' dropped (no hidden folder, no option look-alike). None when no letter
    or digit is left."""
    name = re.sub(r"[^\w.\-]", "_", unicodedata.normalize("NFC", text)).lstrip(".-")
    return name if any(ch.isalnum() for ch in name) and NAME_RE.match(name) else None


def default_name(path: Path) -> str:
    """The name `check` uses without --name: the folder's or archive's stem made usable, else
    'dataset-' + the first 8 hex digits of the SHA-256 of the source's absolute path."""
    path = Path(path)
    stem = archive_stem(path) if not path.is_dir() else None
    made = usable_name(stem if stem is not None else path.name)
    if made is not None:
        return made
    return "dataset-" + hashlib.sha256(str(path.absolute()).encode("utf-8", "surrogateescape")).hexdigest()[:8]


def run(path: str | os.PathLike, name: str | None = None, fmt: str = "auto", fix: bool = False,
        overwrite: bool = False, workspace: Workspace | str | os.PathLike | None = None,
        check_images: bool = True) -> Outcome:
    """Import (or re-check) and check; see the module doc. Raises ToolboxError on unusable input."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    given = Path(path).expanduser()
    if not given.exists():
        if name is None and (ws.datasets / str(path)).is_dir() and check_name(str(path)):
            given = ws.datasets / str(path)
        else:
            raise UsageError(f"{path}: no such file or folder (give a dataset folder, an archive "
                             f"{'/'.join(ARCHIVE_SUFFIXES)}, or the name of a dataset in {ws.datasets})")
    given = given.resolve()
    datasets = ws.datasets.resolve()
    if given.is_dir() and given.parent == datasets:  # a workspace dataset: check in place
        if name not in (None, given.name):
            raise UsageError(f"{given} is already the workspace dataset '{given.name}'; drop --name")
        if fmt not in ("auto", "coco"):
            raise UsageError(f"{given} is a workspace dataset, always in the coco layout; drop --format {fmt}")
        return _in_place(given, ws, fix, check_images)
    stem = archive_stem(given) if given.is_file() else None
    if given.is_file() and stem is None:
        raise UsageError(f"{given} is a file but not an archive this toolbox opens ({', '.join(ARCHIVE_SUFFIXES)}); "
                         f"give the dataset folder or an archive")
    name = check_name(name) if name else default_name(given)
    target = datasets / name
    if target.exists() and not overwrite:
        raise UsageError(f"dataset '{name}' already exists in {datasets}; pass --overwrite to replace it, or "
                         f"--name to import under another name")
    if target == given or target in given.parents:
        raise UsageError(f"{given} lies inside the dataset '{name}' it would replace; import it under another --name")
    ws.ensure()
    with atomic_dir(target) as tmp:
        if stem is not None:
            from .archive import extract

            extract(given, tmp / "source")
            root = formats.find_root(tmp / "source")
        else:
            root = formats.find_root(given)
        embedded = tmp / ".embedded"  # LabelMe imageData decoded here, hard-linked into images/, then removed
        source = formats.read(root, fmt, embedded)
        if stem is not None:
            _confine(source, [tmp / "source", embedded], given)
        scanner = ImageScanner(source, tmp / "images") if check_images else None
        result = _check(source, scanner, fix)
        _write_annotations(source, tmp / "annotations")
        report = _finish(source, result, tmp, target, ws)
        shutil.rmtree(embedded, ignore_errors=True)
    return Outcome(report, target)


def _confine(source: Source, allowed: list[Path], archive: Path) -> None:
    """An archive's annotations may only name images inside the archive (or decoded from it): a
    data.yaml, list file or LabelMe imagePath written to reach a host file would otherwise copy it
    into the workspace."""
    inside = tuple(os.path.realpath(p) + os.sep for p in allowed)
    for split in source.splits.values():
        for index, image in enumerate(split.image_src or []):
            if image is not None and not os.path.realpath(image).startswith(inside):
                # YOLO: data.yaml named the folder; the others: the annotation file of that image
                named_in = split.json_file if source.format == "yolo" or not split.ann_files else split.ann_files[index]
                raise InputError(f"{archive.name}: {named_in} names the image '{image}', which lies outside the "
                                 f"archive: refused (an archive must hold the images its annotations use)")


def _in_place(dataset_dir: Path, ws: Workspace, fix: bool, check_images: bool) -> Outcome:
    from .formats import coco

    if not coco.detect(dataset_dir):
        raise UsageError(f"{dataset_dir} has no annotations/instance_train.json or instance_val.json: import the "
                         f"dataset again with `python -m toolbox check PATH --name {dataset_dir.name} --overwrite`")
    source = coco.read(dataset_dir)
    scanner = ImageScanner(source, None) if check_images else None
    result = _check(source, scanner, fix)
    if fix:
        for split in source.splits.values():
            ann = dataset_dir / "annotations" / f"instance_{split.name}.json"
            if ann.is_file() and not split.broken:
                shutil.copy2(ann, ann.with_name(ann.name + ".bak"))
        _write_annotations(source, dataset_dir / "annotations")
    report = _finish(source, result, dataset_dir, dataset_dir, ws)
    return Outcome(report, dataset_dir)


def _check(source: Source, scanner: ImageScanner | None, fix: bool) -> CheckResult:
    if scanner is not None:
        scanner.scan()
    result = check_source(source, scanner)
    if fix and result.errors:
        fixed = apply_fix(source, result, scanner)
        if fixed:
            again = check_source(source, scanner)
            again.issues = fixed + again.issues
            result = again
    return result


def _write_annotations(source: Source, out_dir: Path) -> None:
    """The workspace COCO files: the source's dicts with `area` and `iscrowd` filled where absent."""
    for split in source.splits.values():
        if split.broken or not isinstance(split.coco, dict) or not isinstance(split.coco.get("images"), list):
            continue
        for a in split.coco.get("annotations") or []:
            if isinstance(a, dict):
                if "area" not in a and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4:
                    try:
                        a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
                    except (TypeError, ValueError):
                        pass
                a.setdefault("iscrowd", 0)
        write_json(out_dir / f"instance_{split.name}.json", split.coco, indent=None)


def _finish(source: Source, result: CheckResult, build_dir: Path, final_dir: Path, ws: Workspace) -> dict:
    """Histogram, samples and the report, written in `build_dir` (the final folder or its temporary twin)."""
    with atomic_dir(build_dir / "check") as check_tmp:
        histogram = draw_histogram(result, check_tmp / "histogram.png")
        if histogram:
            histogram = "check/histogram.png"
        samples: dict[str, list[str]] = {}
        (check_tmp / "samples").mkdir()
        for split in SPLITS:
            sp = source.splits.get(split)
            if sp is None or sp.broken or split not in result.stats or not (build_dir / "images").is_dir():
                continue
            drawn = draw_samples(build_dir, split, sp.coco, result, check_tmp / "samples")
            samples[split] = [p.replace(check_tmp.relative_to(build_dir).as_posix(), "check", 1) for p in drawn]
    shown = CheckResult(listed(result.issues), result.stats, result.cat_ids, result.class_names)
    report = build_report(shown, source, final_dir, ws.root, samples, histogram)
    report["error_counts"] = _counts(result, "error")
    report["warning_counts"] = _counts(result, "warning")
    report["check_pass"] = not result.errors
    write_report(build_dir, report)
    return report


def _counts(result: CheckResult, severity: str) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(i.code for i in result.issues if (i.severity == "error") == (severity == "error")))


__all__ = ["run", "Outcome", "REPORT_NAME", "archive_stem", "default_name", "usable_name", "write_json"]
