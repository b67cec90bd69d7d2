"""`python -m toolbox check|convert|split`: the data step's sub-commands (CONTRACTS.md)."""
from __future__ import annotations

import argparse
import sys

from .api import FORMAT_CHOICES

CHECK_HELP = """\
Import a dataset into the workspace as datasets/NAME/ (PaddleX COCO layout) and check all of it.

PATH is a dataset folder or an archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz), or the name of a dataset already
in the workspace (checked in place). Archives are extracted safely into datasets/NAME/source/; images
are hard-linked or copied (EXIF rotation applied), never moved: your folder is only read.
Formats: coco (PaddleX: annotations/instance_train.json, instance_val.json, images/), roboflow
(train/ valid/ test/ with _annotations.coco.json), voc (JPEGImages/ Annotations/ ImageSets/Main/*.txt,
or PaddleX's train_anno_list.txt/val_anno_list.txt), yolo (data.yaml, images/ and labels/), labelme
(one JSON per image).
The report is datasets/NAME/check_dataset_result.json (+ check/histogram.png, check/samples/)."""

EXIT_HELP = "exit codes: 0 the dataset passed (warnings allowed), 1 it has errors (listed in the report), 2 usage error"


def _add_import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="dataset folder, archive (.zip/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz), or workspace dataset name")
    p.add_argument("--name", help="dataset name in the workspace (default: the folder's or archive's stem, with spaces and other "
                        "characters than letters, digits, '_', '-', '.' made '_'; printed)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                   help="source format (default: auto-detect from the layout)")
    p.add_argument("--fix", action="store_true",
                   help="repair the workspace copy: drop invalid boxes, clip boxes to the image, drop missing "
                        "images, correct sizes; each change is listed as a warning (your files are untouched)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing workspace dataset of that name")


def register(sub, common) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("check", parents=[common], help="import a dataset (folder/archive) and check it",
                       description=CHECK_HELP, epilog=EXIT_HELP, formatter_class=fmt)
    _add_import_options(p)
    p.set_defaults(func=run_check)

    p = sub.add_parser("convert", parents=[common], help="import/convert a dataset to the COCO layout (never fails on data errors)",
                       description=CHECK_HELP.replace("and check all of it", "and check it, but exit 0 even when it has errors "
                                                      "(to look at the report before fixing)"),
                       epilog="exit codes: 0 imported (read the report for errors), 2 usage error", formatter_class=fmt)
    _add_import_options(p)
    p.set_defaults(func=run_convert)

    p = sub.add_parser("split", parents=[common], help="re-split a workspace dataset's train/val by percent",
                       description="Pool the train and val images of datasets/NAME/ and split them again by percent "
                                   "with a seed. The old annotation files are kept as .bak (like PaddleX); a test "
                                   "split is left alone. The dataset is checked again afterwards.",
                       epilog="example: python -m toolbox split cells --train-percent 80 --val-percent 20 --seed 1",
                       formatter_class=fmt)
    p.add_argument("name", metavar="NAME", help="dataset name in the workspace (or its folder)")
    p.add_argument("--train-percent", type=float, required=True, help="percent of the images for train (0-100)")
    p.add_argument("--val-percent", type=float, required=True, help="percent for val; train + val must be 100")
    p.add_argument("--seed", type=int, default=0, help="random seed of the shuffle (default 0)")
    p.set_defaults(func=run_split)


def _summary(report: dict) -> str:
    a = report.get("attributes", {})
    parts = [f"{report.get('dataset_path')}: {report.get('source_format')} → COCO",
             f"{a.get('num_classes', 0)} classes", f"train {a.get('train_samples', 0)}", f"val {a.get('val_samples', 0)}"]
    if "test_samples" in a:
        parts.append(f"test {a['test_samples']}")
    ne = sum((report.get("error_counts") or {}).values())
    nw = sum((report.get("warning_counts") or {}).values())
    return ", ".join(parts) + f"; {ne} error(s), {nw} warning(s)"


def _print(report: dict, limit: int = 10, name_given: bool = True) -> None:
    if not name_given:  # the name was derived from PATH (CONTRACTS.md): say which, so the user can use it
        print(f"dataset name: {str(report.get('dataset_path', '')).rsplit('/', 1)[-1]} (pass --name to choose another)")
    print(_summary(report))
    for kind in ("errors", "warnings"):
        items = report.get(kind) or []
        for item in items[:limit]:
            where = item.get("file") or ""
            if item.get("annotation_id") is not None:
                where += f" [annotation {item['annotation_id']}]"
            print(f"  {kind[:-1]}: {item.get('code')}: {where + ': ' if where else ''}{item.get('problem')}")
        if len(items) > limit:
            print(f"  ... {len(items) - limit} more {kind} in the report")
    print(f"report: {report.get('dataset_path')}/check_dataset_result.json")


def run_check(args) -> int:
    from .api import convert

    report = convert(args.path, args.name, args.format, args.fix, args.overwrite, args.workspace)
    _print(report, name_given=bool(args.name))
    if not report["check_pass"]:
        print("check failed: fix the errors above (or re-run with --fix to drop the invalid boxes)", file=sys.stderr)
        return 1
    print("check passed")
    return 0


def run_convert(args) -> int:
    from .api import convert

    _print(convert(args.path, args.name, args.format, args.fix, args.overwrite, args.workspace),
           name_given=bool(args.name))
    return 0


def run_split(args) -> int:
    from .api import split

    report = split(args.name, args.train_percent, args.val_percent, args.seed, args.workspace)
    _print(report)
    return 0
