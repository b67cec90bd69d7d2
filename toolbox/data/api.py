"""Python API of the data step, the same functions the CLI and the web UI call.

    report = toolbox.check("path/to/voc_or_archive.zip", name="cells")   # import + check
    report = toolbox.convert("path/to/labelme_folder")                   # same, never raises on data errors
    report = toolbox.split("cells", 80, 20, seed=0)                      # re-split train/val

Each returns the dict written to datasets/<name>/check_dataset_result.json (`check_pass` says whether
the dataset can be trained on; `errors` and `warnings` say why). `check` raises `InputError` (exit 1)
when the dataset fails; both raise `UsageError` (exit 2) for bad arguments.
"""
from __future__ import annotations

import os

from ..errors import InputError
from ..workspace import Workspace
from . import importer

FORMAT_CHOICES = ("auto", "coco", "roboflow", "voc", "yolo", "labelme")


def convert(path: str | os.PathLike, name: str | None = None, format: str = "auto", fix: bool = False,  # noqa: A002
            overwrite: bool = False, workspace: Workspace | str | os.PathLike | None = None,
            check_images: bool = True) -> dict:
    """Import PATH (folder or archive, any supported format) into datasets/<name>/ and check it.

    Returns the report whatever the dataset's problems; `check_images=False` skips the image files
    (annotation checks only: benchmarks, quick looks).
    """
    if format not in FORMAT_CHOICES:
        from ..errors import UsageError

        raise UsageError(f"unknown format '{format}'; choose from {', '.join(FORMAT_CHOICES)}")
    return importer.run(path, name, format, fix, overwrite, workspace, check_images).report


def check(path: str | os.PathLike, name: str | None = None, format: str = "auto", fix: bool = False,  # noqa: A002
          overwrite: bool = False, workspace: Workspace | str | os.PathLike | None = None,
          check_images: bool = True, raise_on_fail: bool = False) -> dict:
    """Like `convert`; with `raise_on_fail` a failing dataset raises InputError naming its first error."""
    report = convert(path, name, format, fix, overwrite, workspace, check_images)
    if raise_on_fail and not report["check_pass"]:
        raise InputError(failure_line(report))
    return report


def failure_line(report: dict) -> str:
    errors = report.get("errors") or []
    total = sum((report.get("error_counts") or {}).values()) or len(errors)
    first = errors[0] if errors else {}
    where = first.get("file") or ""
    if first.get("annotation_id") is not None:
        where += f" (annotation {first['annotation_id']})"
    return (f"dataset {report.get('dataset_path')} failed the check with {total} error(s); first: "
            f"{where + ': ' if where else ''}{first.get('problem', '?')} — see "
            f"{report.get('dataset_path')}/check_dataset_result.json")


def split(name: str, train_percent: float, val_percent: float, seed: int = 0,
          workspace: Workspace | str | os.PathLike | None = None) -> dict:
    """Re-split a workspace dataset's train+val images by percent (old files kept as .bak); re-check it."""
    from .split import resplit

    return resplit(name, train_percent, val_percent, seed, workspace)
