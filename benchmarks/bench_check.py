"""How long `check` takes on a large COCO file, next to pycocotools' COCO() load of the same file.

    .venv/bin/python benchmarks/bench_check.py [--images 100000] [--boxes 1000000] [--full]

Generates annotations/instance_train.json (+ a small instance_val.json) of random but valid boxes in a
temporary PaddleX layout (no image files), then times:
  - pycocotools: COCO(path) (json.load + index),
  - toolbox check, annotation checks: reading the split files and every annotation check
    (schema, ids, categories, boxes inside their image, orphans, images without boxes, statistics),
    image files skipped (check_images=False),
  - with --full also the whole import (`toolbox.check(..., check_images=False)`: + writing the workspace
    copy of the annotations, the report and the histogram).
Prints the times and the ratio check / COCO(); the target is a ratio <= 1.5.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_coco(path: Path, num_images: int, num_boxes: int, num_classes: int = 80, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w = rng.integers(320, 1920, num_images)
    h = rng.integers(240, 1080, num_images)
    img_of = np.sort(rng.integers(0, num_images, num_boxes))
    bw = rng.uniform(0.02, 0.5, num_boxes) * w[img_of]
    bh = rng.uniform(0.02, 0.5, num_boxes) * h[img_of]
    x = rng.uniform(0, 1, num_boxes) * (w[img_of] - bw)
    y = rng.uniform(0, 1, num_boxes) * (h[img_of] - bh)
    cats = rng.integers(1, num_classes + 1, num_boxes)
    boxes = np.round(np.stack([x, y, bw, bh], 1), 2).tolist()
    images = [{"id": i + 1, "file_name": f"{i:07d}.jpg", "width": int(w[i]), "height": int(h[i])} for i in range(num_images)]
    anns = [{"id": k + 1, "image_id": int(img_of[k]) + 1, "category_id": int(cats[k]), "bbox": boxes[k],
             "area": round(boxes[k][2] * boxes[k][3], 2), "iscrowd": 0} for k in range(num_boxes)]
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, num_classes + 1)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import orjson

        path.write_bytes(orjson.dumps(coco))
    except ImportError:
        path.write_text(json.dumps(coco))


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of `repeat` runs (CPU time is the fair figure on a shared machine)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
        del result
    return best_wall, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--boxes", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs for each timing")
    ap.add_argument("--full", action="store_true", help="also time the whole import (writes the workspace copy)")
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    args = ap.parse_args()

    from pycocotools.coco import COCO

    from toolbox.data import formats
    from toolbox.data.check import check_source

    with tempfile.TemporaryDirectory(prefix="bench_check_") as tmp:
        root = Path(args.dir or tmp) / "big"
        t = time.perf_counter()
        make_coco(root / "annotations" / "instance_train.json", args.images, args.boxes)
        make_coco(root / "annotations" / "instance_val.json", 100, 1000, seed=1)
        size = (root / "annotations" / "instance_train.json").stat().st_size
        print(f"generated {args.images:,} images, {args.boxes:,} boxes ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        train = root / "annotations" / "instance_train.json"
        train.read_bytes()  # page cache warm for both

        import contextlib
        import io

        def coco_load():
            with contextlib.redirect_stdout(io.StringIO()):
                return COCO(str(train))

        def toolbox_check():
            source = formats.read(root, "coco")
            result = check_source(source, probe=None)
            assert not result.errors, result.errors[:3]
            return result

        t_coco = timed(coco_load, args.repeat)
        t_check = timed(toolbox_check, args.repeat)
        print(f"{'':36s}{'wall':>9s}{'cpu':>9s}")
        print(f"{'pycocotools COCO() load':36s}{t_coco[0]:8.2f}s{t_coco[1]:8.2f}s")
        print(f"{'toolbox check (annotation checks)':36s}{t_check[0]:8.2f}s{t_check[1]:8.2f}s")
        print(f"{'ratio check / COCO()':36s}{t_check[0] / t_coco[0]:9.2f}{t_check[1] / t_coco[1]:9.2f}  (target <= 1.5)")
        if args.full:
            from toolbox.data.api import check

            ws = Path(tmp) / "ws"
            t = time.perf_counter()
            report = check(root, name="big", workspace=ws, check_images=False)
            t_full = time.perf_counter() - t
            print(f"toolbox.check() full import, no image files: {t_full:.2f} s (check_pass={report['check_pass']})")


if __name__ == "__main__":
    main()
