"""Export every model config at its real size with seeded informative weights, and tabulate its checks.

    .venv/bin/python benchmarks/bench_export.py [--models RT-DETR-L,RT-DETR-X] [--sizes 1024]
        [--formats paddle,onnx[,rknn]] [--num-classes 80] [--images 4] [--out DIR] [--keep]

For each pipelines/*.yaml config except tiny-test (or those of --models), at its default input size and
at every --sizes value: build the model, seed informative weights (toolbox.export.seeded: detections
spread over ~0.1-0.9 on the check images, so score checks mean something), run the public
`toolbox.export.api.export(..., formats=...)` and read the figures back from its export_report.json
(a failed export's report too, from exports/<name>.failed/). One row per config, size and format:

    model, size, format, passed, raw max |dlogit|, raw max |dbox|, detections matched/compared,
    min IoU, max |dscore|, seconds (the export's own timing of that format's step)

Raw figures: ONNX vs Paddle after pairing queries (report key raw_pairing), RKNN simulator vs
onnxruntime with the same selected queries. No timing is asserted; the machine's load average is
printed before and after, since the seconds mean little on a loaded machine. Exit status 1 when any
export failed its check (the table still prints), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = ("model", "size", "format", "passed", "raw|dlogit|", "raw|dbox|", "matched", "minIoU", "max|dscore|",
           "seconds")


def figures(report: dict, fmt: str) -> dict:
    """One format's row figures from an export_report.json (None where the report has no such figure)."""
    entry = report.get("formats", {}).get(fmt)
    timing = report.get("timings_s", {}).get(fmt)
    if entry is None:
        return {"passed": None, "raw_logit": None, "raw_box": None, "dets": {}, "seconds": timing}
    check = entry.get("check") or {}
    raw_logit = raw_box = None
    if fmt == "onnx":
        raw = check.get("raw_pairing") or check.get("raw_max_abs_diff") or {}
        dets = check.get("detections") or {}
    elif fmt == "rknn":
        raw = check.get("simulator_raw_max_abs_diff") or {}
        dets = check.get("simulator_vs_onnx") or {}
    else:  # paddle, onnx_fp16: detections only
        raw = {}
        dets = check.get("detections") or check
    raw_logit, raw_box = raw.get("pred_logits"), raw.get("pred_boxes")
    return {"passed": entry.get("passed"), "raw_logit": raw_logit, "raw_box": raw_box, "dets": dets,
            "seconds": timing}


def row(model: str, size: int, fmt: str, f: dict) -> list[str]:
    def num(v, spec):
        return "-" if v is None else format(v, spec)

    d = f["dets"]
    matched = f"{d['matched']}/{d['compared']}" if "matched" in d and "compared" in d else "-"
    passed = "-" if f["passed"] is None else ("yes" if f["passed"] else "NO")
    return [model, str(size), fmt, passed, num(f["raw_logit"], ".2e"), num(f["raw_box"], ".2e"), matched,
            num(d.get("min_iou"), ".4f"), num(d.get("max_score_diff"), ".2e"), num(f["seconds"], ".1f")]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    for r in [list(COLUMNS), ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), flush=True)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_one(model: str, size: int | None, formats: list[str], num_classes: int, images: int, root: Path) -> tuple[dict, int, float]:
    """Seed + export one config; returns (export report, input size, wall seconds of the export call)."""
    from toolbox.errors import ToolboxError
    from toolbox.export.api import export
    from toolbox.export.seeded import write_seeded_weights

    seeded = write_seeded_weights(model, root / "weights", num_classes=num_classes, input_size=size,
                                  num_images=images)
    if seeded.summary.get("norms_recalibrated"):
        print(f"  {model} @ {seeded.input_size}: degenerate as initialised; BatchNorm statistics of "
              f"{seeded.summary['norms_recalibrated']} layers recalibrated on the check images before seeding",
              flush=True)
    ws = root / "ws"
    t0 = time.time()
    try:
        out = export(model=model, weights=str(seeded.weights), num_classes=num_classes, formats=formats,
                     input_size=seeded.input_size, samples=[str(p) for p in seeded.samples], workspace=ws,
                     progress=False)
    except ToolboxError as e:
        print(f"  {model} @ {seeded.input_size}: export failed: {e}", flush=True)
        failed = sorted((ws / "exports").glob("*.failed"))
        if not failed:
            return {"formats": {}, "timings_s": {}, "error": str(e)}, seeded.input_size, time.time() - t0
        out = failed[0]
    report = json.loads((out / "export_report.json").read_text(encoding="utf-8"))
    return report, seeded.input_size, time.time() - t0


def main(argv: list[str] | None = None) -> int:
    from toolbox.models.config import model_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma separated config names (default: every pipelines/ config but tiny-test)")
    ap.add_argument("--sizes", default="", help="extra input sizes, comma separated (e.g. 1024); the default size always runs")
    ap.add_argument("--formats", default="paddle,onnx", help="passed to export() as given (e.g. paddle,onnx,rknn)")
    ap.add_argument("--num-classes", type=int, default=80)
    ap.add_argument("--images", type=int, default=4, help="check images per export (the export's default: 4)")
    ap.add_argument("--out", help="folder for weights and exports (default: a temporary one, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the exports")
    args = ap.parse_args(argv)

    known = model_names()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else \
        [m for m in known if m != "tiny-test"]
    unknown = [m for m in models if m not in known and not Path(m).is_file()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        extra = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes must be integers, got {args.sizes!r}")
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.num_classes < 1 or args.images < 1 or any(s < 32 or s % 32 for s in extra):
        ap.error("--num-classes and --images must be >= 1, --sizes multiples of 32")
    show = [f for f in ("paddle", "onnx", "onnx_fp16", "rknn") if f in formats]

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_export."))
    print(f"bench_export: {len(models)} config(s), formats {','.join(formats)}, {args.num_classes} classes, "
          f"{args.images} image(s); load average {load_average()}; work in {root}", flush=True)
    rows, failed = [], 0
    try:
        for model in models:
            for size in [None, *extra]:
                work = root / f"{Path(model).stem}_{size or 'default'}"
                work.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                try:
                    report, s, wall = run_one(model, size, formats, args.num_classes, args.images, work)
                except Exception as e:  # noqa: BLE001 - one config's crash must not hide the others' figures
                    print(f"  {model} @ {size or 'default'}: ERROR {type(e).__name__}: {e}", flush=True)
                    report, s, wall = {"formats": {}, "timings_s": {}, "ok": False}, size or 0, 0.0
                failed += int(not report.get("ok", False))
                mine = [row(Path(model).stem, s, fmt, figures(report, fmt)) for fmt in show]
                rows.extend(mine)
                for r in mine:  # as it goes, so a long run that is stopped still shows what it measured
                    print("  | " + "  ".join(r), flush=True)
                print(f"  {model} @ {s}: {'passed' if report.get('ok') else 'FAILED'}, export {wall:.0f} s "
                      f"(with seeding {time.time() - t0:.0f} s), load average {load_average()}", flush=True)
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows)
    print(f"\nload average {load_average()}; {failed} export(s) failed their check")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
