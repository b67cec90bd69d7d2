"""The check report: check_dataset_result.json (PaddleX's keys plus errors and warnings), the
class histogram (check/histogram.png) and sample drawings (check/samples/), all relative to the
dataset folder so the folder can be moved or zipped as a whole.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_path, write_json
from .check import CheckResult
from .source import SPLITS, Source

SCHEMA_VERSION = 1
REPORT_NAME = "check_dataset_result.json"
SAMPLES_PER_SPLIT = 10
SAMPLE_MAX_SIDE = 1024


def build_report(result: CheckResult, source: Source, dataset_dir: Path, workspace_root: Path | None,
                 sample_paths: dict[str, list[str]], histogram: str | None) -> dict:
    """The report dict; `dataset_path` is relative to the workspace when the dataset lies inside it."""
    try:
        ds_path = dataset_dir.resolve().relative_to(workspace_root.resolve()).as_posix() if workspace_root else str(dataset_dir)
    except ValueError:
        ds_path = str(dataset_dir)
    attributes: dict = {"num_classes": len(result.cat_ids), "class_names": list(result.class_names)}
    for split in SPLITS:
        if split in source.splits or split != "test":
            st = result.stats.get(split)
            attributes[f"{split}_samples"] = st.images if st else 0
    for split in SPLITS:
        if f"{split}_samples" in attributes:
            attributes[f"{split}_sample_paths"] = sample_paths.get(split, [])
    sizes = Counter()
    per_class: dict[str, dict[str, int]] = {}
    for split, st in result.stats.items():
        sizes.update(st.box_sizes)
        per_class[split] = {name: int(st.boxes_per_class.get(cid, 0)) for cid, name in zip(result.cat_ids, result.class_names)}
    counts_e = Counter(i.code for i in result.errors)
    counts_w = Counter(i.code for i in result.warnings)
    return {
        "schema_version": SCHEMA_VERSION,
        "done_flag": True,
        "check_pass": not result.errors,
        "dataset_type": "COCODetDataset",
        "source_format": source.format,
        "dataset_path": ds_path,
        "show_type": "image",
        "attributes": attributes,
        "analysis": {
            "histogram": histogram,
            "box_sizes": {k: int(sizes.get(k, 0)) for k in ("small", "medium", "large")},
            "images_without_boxes": int(sum(st.images_without_boxes for st in result.stats.values())),
            "boxes_per_class": per_class,
            "box_sizes_per_split": {s: dict(st.box_sizes) for s, st in result.stats.items()},
        },
        "errors": [i.as_dict() for i in result.errors],
        "warnings": [i.as_dict() for i in result.warnings],
        "error_counts": dict(counts_e),
        "warning_counts": dict(counts_w),
    }


def write_report(dataset_dir: Path, report: dict) -> Path:
    path = dataset_dir / REPORT_NAME
    write_json(path, report)
    return path


def draw_histogram(result: CheckResult, out_png: Path) -> str | None:
    """Boxes per class, one bar group per class, one colour per split."""
    if not result.class_names or not result.stats:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    from ..draw import FONT_CANDIDATES

    family = None
    needs_cjk = any(ord(ch) > 127 for name in result.class_names for ch in name)
    for path in FONT_CANDIDATES if needs_cjk else ():
        if Path(path).is_file():
            try:
                font_manager.fontManager.addfont(path)
                family = font_manager.FontProperties(fname=path).get_name()
                break
            except (OSError, RuntimeError):
                continue
    names = result.class_names
    splits = [s for s in SPLITS if s in result.stats]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(splits))
    with plt.rc_context({"font.family": family} if family else {}):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) + 2), 4), dpi=100)
        for k, split in enumerate(splits):
            counts = [result.stats[split].boxes_per_class.get(cid, 0) for cid in result.cat_ids]
            ax.bar(x + (k - (len(splits) - 1) / 2) * width, counts, width, label=split)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
        ax.set_ylabel("boxes")
        ax.set_title("Boxes per class")
        ax.legend()
        fig.tight_layout()
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
    return out_png.name


def draw_samples(dataset_dir: Path, split: str, coco: dict, result: CheckResult, out_dir: Path,
                 count: int = SAMPLES_PER_SPLIT) -> list[str]:
    """Draw up to `count` images of a split that have boxes, evenly spread; paths relative to dataset_dir."""
    from ..draw import draw_boxes

    images = coco.get("images") or []
    anns = coco.get("annotations") or []
    index = {cid: i for i, cid in enumerate(result.cat_ids)}
    by_image: dict = {}
    for a in anns:
        if isinstance(a, dict) and a.get("category_id") in index and isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4:
            by_image.setdefault(a.get("image_id"), []).append(a)
    candidates = [im for im in images if isinstance(im, dict) and im.get("id") in by_image
                  and (dataset_dir / "images" / str(im.get("file_name"))).is_file()]
    if not candidates:
        return []
    picks = [candidates[int(i)] for i in np.unique(np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round())]
    written = []
    for im in picks:
        try:
            with Image.open(dataset_dir / "images" / im["file_name"]) as img:
                img.load()
                drawn = draw_boxes(img, [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (a["bbox"] for a in by_image[im["id"]])],
                                   [index[a["category_id"]] for a in by_image[im["id"]]], result.class_names)
        except (OSError, ValueError):
            continue
        scale = SAMPLE_MAX_SIDE / max(drawn.size)
        if scale < 1:
            drawn = drawn.resize((round(drawn.width * scale), round(drawn.height * scale)), Image.BILINEAR)
        stem = Path(str(im["file_name"])).with_suffix("").as_posix().replace("/", "_")
        target = out_dir / f"{split}_{stem}.jpg"
        with atomic_path(target) as tmp:
            drawn.save(tmp, format="JPEG", quality=88)
        written.append(target.relative_to(dataset_dir).as_posix())
    return written
