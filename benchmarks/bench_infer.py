"""CPU inference latency of exports (RT-DETR-R18; RF-DETR-N with --rfdetr): onnxruntime and Paddle Inference, batch 1.

    .venv/bin/python benchmarks/bench_infer.py [--sizes 640 320] [--runs 50] [--paddle-runs 50]
        [--weights PATH.pdparams --num-classes N] [--workspace DIR] [--threads T]
    .venv/bin/python benchmarks/bench_infer.py --compare A.onnx B.onnx [--runs 50] [--threads T]

Exports RT-DETR-R18 with `toolbox.export` (paddle + onnx, each checked as usual) at each size, then times
`session.run` / `predictor.run` on a fixed input (median of --runs after 3 warm-up runs; preprocessing
excluded). Weights: ../shared/reference/conformance_r18_320_c3/weights.pdparams (3 classes) when present,
else a seeded random initialisation (latency does not depend on the values).

--compare A.onnx B.onnx times two exports of the same signature in one process, alternately (A, B, A, B,
...; median of --runs each, at least 30, batch 1, one fixed seeded input), and prints both medians and
the ratio B/A. Only such same-run ratios are comparable: figures taken on another machine, or at another
time on a shared one, are not. The script prints the load average: on a shared machine absolute figures
are upper bounds, and a ratio is trustworthy only when the load stayed steady.

    .venv/bin/python benchmarks/bench_infer.py --int8 [--sizes 640] [--runs 30] [--calib-size 200]
        [--dataset DIR] [--max-ap-drop 0.010] [--int8-plans] [--int8-recipes] [--reuse --workspace W]

    .venv/bin/python benchmarks/bench_infer.py --rfdetr [--sizes 384] [--runs 50] [--threads T]

--rfdetr (issue 15) exports RF-DETR-N (random-initialised, class head seeded: toolbox/rfdetr/seeded.py;
nothing downloaded) and RT-DETR-R18 (the weights above) at the same input size (default 384, RF-DETR-N's
own), each with its export check, then times the two model.onnx files with --compare's alternating loop
(batch 1, the same seeded input, median of --runs >= 30) and prints both medians and the ratio RF-DETR-N /
RT-DETR-R18. Both graphs include their post-processing (the contract's signature).

--int8 (issue 16) exports `--formats onnx-int8` (the FP32 model.onnx and model_int8.onnx of one export,
calibrated on the train split of --dataset, default the built-in demo set generated at its default
size), then times FP32 and INT8 alternately, run by run (median of --runs >= 30, batch 1, onnxruntime's
default threads), and prints their ratio, both val APs from export_report.json and the CPU flags that
decide INT8 speed. AP figures mean something only for weights that learned the dataset (bench_learn.py).
--int8-plans times every stage plan the export tried (latency ratio vs AP drop); --int8-recipes times the
op sets of the recipe's history (Conv+MatMul only ... OP_TYPES), all stages INT8, from one calibration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COMPARE_MIN_RUNS = 30  # fewer runs make the median of a shared 2-core machine swing by several %


def timed(fn, runs: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms) of each run. CPU time (all threads) is what other users of a shared
    machine cannot steal: on an idle machine wall ~= cpu / threads used."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--paddle-runs", type=int, default=50)
    ap.add_argument("--weights", help="R18 .pdparams (default: the shared conformance weights, else random)")
    ap.add_argument("--num-classes", type=int, default=3)
    ap.add_argument("--workspace", help="workspace for the exports (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    ap.add_argument("--reuse", action="store_true", help="reuse exports already in --workspace")
    ap.add_argument("--compare", nargs=2, metavar=("A.onnx", "B.onnx"),
                    help="time two ONNX exports alternately in this process and print the ratio B/A")
    add_int8_args(ap)
    ap.add_argument("--rfdetr", action="store_true",
                    help="ONNX latency of RF-DETR-N vs RT-DETR-R18 at the same size (default 384), one run")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads or os.cpu_count() or 1))
    if args.compare:
        return compare_main(args.compare[0], args.compare[1], args.runs, args.threads or None)

    import numpy as np

    from toolbox.export.api import export
    from toolbox.export.onnx import session
    from toolbox.export.runtime import paddle_predictor, run_paddle

    ws = Path(args.workspace or tempfile.mkdtemp(prefix="bench_infer_"))
    weights = args.weights
    shared = ROOT.parent / "shared" / "reference" / "conformance_r18_320_c3" / "weights.pdparams"
    if not weights and shared.is_file():
        weights = str(shared)
    if not weights:
        import paddle

        from toolbox.models import build_model, save_weights

        paddle.seed(0)
        weights = str(save_weights(build_model("RT-DETR-R18", args.num_classes), ws / "r18_random.pdparams"))
    print(f"weights: {weights} ({args.num_classes} classes); cpus: {os.cpu_count()}; "
          f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    if args.int8:
        return int8_main(args, ws, weights)
    if args.rfdetr:
        return rfdetr_main(args, ws, weights)
    rows = []
    for size in args.sizes:
        t0 = time.time()
        d = ws / "exports" / f"bench-r18-{size}"
        if not (args.reuse and (d / "infer_cfg.yml").is_file()):
            d = export(model="RT-DETR-R18", weights=weights, num_classes=args.num_classes, name=f"bench-r18-{size}",
                       input_size=size, formats=("paddle", "onnx"), workspace=ws, progress=False)
            print(f"exported {size}: {d} in {time.time() - t0:.0f} s", flush=True)
        rng = np.random.default_rng(0)
        x = rng.random((1, 3, size, size), dtype=np.float32)
        sizes = np.array([[size, size]], np.int64)
        sess = session(d / "model.onnx", args.threads or None)
        ms, cpu = timed(lambda: sess.run(None, {"images": x, "orig_target_sizes": sizes}), args.runs)
        rows.append(("onnxruntime", size, statistics.median(ms), min(ms), statistics.median(cpu), len(ms)))
        print(f"  onnxruntime {size}: median {rows[-1][2]:.1f} ms", flush=True)
        pred = paddle_predictor(d / "paddle" / "model.json", d / "paddle" / "model.pdiparams", args.threads or None)
        ms, cpu = timed(lambda: run_paddle(pred, [x, sizes]), args.paddle_runs, warmup=2)
        rows.append(("paddle", size, statistics.median(ms), min(ms), statistics.median(cpu), len(ms)))
        print(f"  paddle inference {size}: median {rows[-1][2]:.1f} ms", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (a shared CPU inflates every figure)")
    print(f"{'runtime':<18}{'size':>6}{'median ms':>12}{'min ms':>10}{'cpu ms':>10}{'runs':>6}")
    for rt, size, med, mn, cpu, n in rows:
        print(f"{rt:<18}{size:>6}{med:>12.1f}{mn:>10.1f}{cpu:>10.1f}{n:>6}")
    return 0


# ---------------------------------------------------------------------------------------------- --compare
def compare_feeds(path: str | os.PathLike, seed: int = 0) -> dict:
    """One fixed input for an exported graph, batch 1: `images` uniform in [0, 1) from a seeded generator,
    `orig_target_sizes` the input size. The shapes are read from the graph (S fixed at export)."""
    import numpy as np
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    if "images" not in names:
        raise SystemExit(f"error: {path} has no 'images' input (inputs: {', '.join(names)}): not an export of "
                         f"this toolbox")
    dims = [d.dim_value for d in next(i for i in graph.input if i.name == "images").type.tensor_type.shape.dim]
    size = dims[2] if len(dims) == 4 and dims[2] > 0 else None
    if size is None:
        raise SystemExit(f"error: {path}: 'images' must be [N,3,S,S] with S fixed, got {dims}")
    rng = np.random.default_rng(seed)
    feeds = {"images": rng.random((1, 3, size, size), dtype=np.float32)}
    if "orig_target_sizes" in names:
        feeds["orig_target_sizes"] = np.array([[size, size]], np.int64)
    return feeds


def compare_exports(a: str | os.PathLike, b: str | os.PathLike, runs: int, threads: int | None = None,
                    warmup: int = 3) -> dict:
    """Median wall ms of A and B timed alternately (A, B, A, B, ...) in this process on the same input,
    so drifting load on a shared machine hits both alike; ratio = B / A."""
    from toolbox.export.onnx import session

    if runs < COMPARE_MIN_RUNS:
        raise SystemExit(f"error: --compare needs --runs >= {COMPARE_MIN_RUNS}, got {runs}")
    for p in (a, b):
        if not Path(p).is_file():
            raise SystemExit(f"error: {p} does not exist")
    feeds_a, feeds_b = compare_feeds(a), compare_feeds(b)
    if {k: v.shape for k, v in feeds_a.items()} != {k: v.shape for k, v in feeds_b.items()}:
        raise SystemExit(f"error: {a} and {b} take different inputs: compare exports of one model and size")
    sa, sb = session(a, threads), session(b, threads)
    feeds = feeds_a  # the same arrays for both (same seed and shapes)
    for _ in range(warmup):
        sa.run(None, feeds)
        sb.run(None, feeds)
    ta, tb, ca, cb = [], [], [], []
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        for sess, wall, cpu in ((sa, ta, ca), (sb, tb, cb)):
            t, c = time.perf_counter(), time.process_time()
            sess.run(None, feeds)
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    ma, mb = statistics.median(ta), statistics.median(tb)
    return {"a": str(a), "b": str(b), "runs": runs, "median_a_ms": ma, "median_b_ms": mb, "ratio": mb / ma,
            "min_a_ms": min(ta), "min_b_ms": min(tb), "cpu_a_ms": statistics.median(ca),
            "cpu_b_ms": statistics.median(cb), "cpu_ratio": statistics.median(cb) / statistics.median(ca),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def compare_main(a: str, b: str, runs: int, threads: int | None) -> int:
    r = compare_exports(a, b, runs, threads)
    print(f"cpus: {os.cpu_count()}; threads: {threads or 'onnxruntime default'}; runs: {r['runs']} each, "
          f"alternating, batch 1")
    print(f"A {r['a']}: median {r['median_a_ms']:.1f} ms (min {r['min_a_ms']:.1f}; process CPU {r['cpu_a_ms']:.1f} ms)")
    print(f"B {r['b']}: median {r['median_b_ms']:.1f} ms (min {r['min_b_ms']:.1f}; process CPU {r['cpu_b_ms']:.1f} ms)")
    print(f"ratio B/A: {r['ratio']:.3f} (wall), {r['cpu_ratio']:.3f} (process CPU time: what other users of a "
          f"shared machine cannot steal; with --threads 1 it is the work each graph does)")
    print(f"load average: {r['load_before']:.1f} before, {r['load_after']:.1f} after (a shared CPU inflates both "
          f"medians; the ratio holds while the load is steady)")
    return 0


# ---------------------------------------------------------------------------------------------- --rfdetr
RFDETR_DEFAULT_SIZES = [384]   # RF-DETR-N's default resolution (rfdetr's RFDETRNanoConfig)


def rfdetr_main(args, ws: Path, weights: str) -> int:
    """RT-DETR-R18 and RF-DETR-N exported at each size, their model.onnx timed alternately (compare_exports)."""
    from toolbox.export.api import export
    from toolbox.rfdetr.seeded import write_seeded_checkpoint

    sizes = RFDETR_DEFAULT_SIZES if args.sizes == [640, 320] else args.sizes
    rows = []
    for size in sizes:
        paths = {}
        for model in ("RT-DETR-R18", "RF-DETR-N"):
            name = f"bench-{model.lower()}-{size}"
            d = ws / "exports" / name
            if not (args.reuse and (d / "model.onnx").is_file()):
                t0 = time.time()
                if model == "RF-DETR-N":
                    w, samples = write_seeded_checkpoint(model, ws / f"seed-{size}", num_classes=args.num_classes,
                                                         input_size=size)
                    d = export(model=model, weights=str(w), num_classes=args.num_classes, name=name, input_size=size,
                               samples=samples, workspace=ws, progress=False)
                else:
                    d = export(model=model, weights=weights, num_classes=args.num_classes, name=name,
                               input_size=size, formats=("paddle", "onnx"), workspace=ws, progress=False)
                print(f"exported {model} {size}: {d} in {time.time() - t0:.0f} s", flush=True)
            paths[model] = d / "model.onnx"
        r = compare_exports(paths["RT-DETR-R18"], paths["RF-DETR-N"], max(args.runs, COMPARE_MIN_RUNS),
                            args.threads or None)
        rows.append((size, r))
        print(f"  {size}: RT-DETR-R18 {r['median_a_ms']:.1f} ms, RF-DETR-N {r['median_b_ms']:.1f} ms, "
              f"ratio {r['ratio']:.2f}", flush=True)
    print(f"\ncpus: {os.cpu_count()}; threads: {args.threads or 'onnxruntime default'}; batch 1, alternating runs; "
          f"load average after: {os.getloadavg()[0]:.1f} (a shared CPU inflates both medians)")
    print(f"{'size':>6}{'R18 ms':>10}{'RF-N ms':>10}{'RF-N/R18':>10}{'R18 cpu ms':>12}{'RF-N cpu ms':>13}{'runs':>6}")
    for size, r in rows:
        print(f"{size:>6}{r['median_a_ms']:>10.1f}{r['median_b_ms']:>10.1f}{r['ratio']:>10.2f}{r['cpu_a_ms']:>12.1f}"
              f"{r['cpu_b_ms']:>13.1f}{r['runs']:>6}")
    return 0


# ---------------------------------------------------------------------------------------------- --int8
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def add_int8_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--int8", action="store_true", help="FP32 vs INT8 ONNX latency and AP of one onnx-int8 export")
    ap.add_argument("--dataset", help="--int8: COCO dataset folder for calibration and AP (default: the demo set)")
    ap.add_argument("--calib-size", type=int, default=None, help="--int8: calibration images (default 200)")
    ap.add_argument("--max-ap-drop", type=float, default=0.010, help="--int8: the export's AP-drop limit")
    ap.add_argument("--int8-plans", action="store_true",
                    help="--int8: also rebuild every plan the export tried and time it (the trade-off curve: "
                         "latency ratio vs AP drop per quantization choice)")
    ap.add_argument("--int8-recipes", action="store_true",
                    help="--int8: also time each op set of the recipe's history (Conv+MatMul only ... OP_TYPES), "
                         "all stages INT8, against FP32 in one alternating loop")


def cpu_flags() -> dict:
    """The instruction-set flags of /proc/cpuinfo that decide onnxruntime's INT8 kernels, and the CPU name."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    return {"cpu": name, **{f: f in flags for f in INT8_FLAGS}}


def alternate(fns: dict, runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Wall ms of each fn, run in turn (A, B, A, B, ...) so load changes on a shared CPU hit both alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1000)
    return out


def calibrated(d: Path, dataset_dir: Path, rep: dict, tmp: Path):
    """The export's prepared graph (written under `tmp`) and its calibration ranges, rebuilt from the same
    train images the export used: (prepared path, ranges)."""
    import json

    import numpy as np

    from toolbox.export import onnx_int8 as Q
    from toolbox.export.paddle_static import read_infer_cfg
    from toolbox.export.runtime import load_image, normalize, resize, resize_interp

    cfg = read_infer_cfg(d)
    ann = json.loads((dataset_dir / "annotations" / "instance_train.json").read_text())
    paths = [dataset_dir / "images" / im["file_name"] for im in sorted(ann["images"], key=lambda x: x["id"])]
    paths = paths[:rep["calibration"]["images"]]

    def prep(p):
        im = load_image(p)
        x = normalize(resize(im, cfg["input_size"], resize_interp(cfg)), cfg)[None]
        return {"images": x, "orig_target_sizes": np.array([[im.shape[1], im.shape[0]]], np.int64)}

    t0 = time.time()
    prepared = Q.prepare(d / "model.onnx", tmp / "prepared.onnx")   # as the export did
    ranges = Q.calibrate(prepared, [prep(p) for p in paths])
    print(f"  calibrated on {len(paths)} images in {time.time() - t0:.0f} s", flush=True)
    return prepared, ranges


def plan_curve(d: Path, dataset_dir: Path, rep: dict, feeds: dict, args) -> None:
    """Every plan of the export's report rebuilt (same calibration images and recipe) and timed against FP32,
    alternating; prints latency ratio and AP drop per plan."""
    from toolbox.export import onnx_int8 as Q
    from toolbox.export.onnx import session

    with tempfile.TemporaryDirectory() as tmp:
        prepared, ranges = calibrated(d, dataset_dir, rep, Path(tmp))
        stages_of = Q.nodes_in(prepared, rep["stage_ranges"])
        fp32 = session(d / "model.onnx", args.threads or None)
        fp32_ap = rep["check"]["fp32"]["AP"]
        print(f"  {'INT8 stages':<52}{'ratio':>7}{'AP drop':>9}{'matched':>9}")
        for plan in rep["plans"]:
            q = Q.Int8Plan(plan["quantized"])
            path = Q.quantize_with_ranges(prepared, Path(tmp) / "plan.onnx", ranges, q.exclude(stages_of))
            sess = session(path, args.threads or None)
            ms = alternate({"fp32": lambda: fp32.run(None, feeds), "int8": lambda: sess.run(None, feeds)}, args.runs)
            ratio = statistics.median(ms["int8"]) / statistics.median(ms["fp32"])
            drop = fp32_ap - plan["int8_ap"]["AP"]
            print(f"  {'+'.join(q.quantized):<52}{ratio:>7.2f}{drop:>9.4f}{plan['agreement']['matched_fraction']:>9.3f}",
                  flush=True)


def recipe_variants() -> dict[str, tuple[str, ...]]:
    """The op sets compared by --int8-recipes (all stages INT8): the recipe's history, down to Conv+MatMul."""
    from toolbox.export.onnx_int8 import OP_TYPES

    return {"Conv+MatMul only": ("Conv", "MatMul"),
            "+ Relu/Clip/MaxPool (merged)": ("Conv", "MatMul", "Relu", "Clip", "MaxPool"),
            "+ ... Split, no Mul/Sigmoid": tuple(o for o in OP_TYPES if o not in ("Mul", "Sigmoid")),
            "the recipe (OP_TYPES)": OP_TYPES}


def recipe_curve(d: Path, dataset_dir: Path, rep: dict, feeds: dict, args) -> None:
    """Each op set of recipe_variants, all stages INT8 from one calibration, timed in one alternating loop with
    FP32 (every session in turn, so load hits all alike); prints each median and its ratio to FP32."""
    from toolbox.export import onnx_int8 as Q
    from toolbox.export.onnx import session

    with tempfile.TemporaryDirectory() as tmp:
        prepared, ranges = calibrated(d, dataset_dir, rep, Path(tmp))
        sessions = {"FP32 model.onnx": session(d / "model.onnx", args.threads or None)}
        for i, (name, ops) in enumerate(recipe_variants().items()):
            path = Q.quantize_with_ranges(prepared, Path(tmp) / f"recipe{i}.onnx", ranges, op_types=ops)
            sessions[name] = session(path, args.threads or None)
        ms = alternate({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, args.runs)
    fp32 = statistics.median(ms["FP32 model.onnx"])
    print(f"  {'op set (all stages INT8)':<34}{'ms':>9}{'ratio':>7}   load {os.getloadavg()[0]:.1f}")
    for k, v in ms.items():
        print(f"  {k:<34}{statistics.median(v):>9.1f}{statistics.median(v) / fp32:>7.2f}", flush=True)


def int8_main(args, ws: Path, weights: str) -> int:
    import json

    import numpy as np

    from toolbox.data.api import check
    from toolbox.export.api import export
    from toolbox.export.onnx import session

    if args.runs < 30:
        print("--int8 needs --runs >= 30 (median of at least 30 alternating runs)", file=sys.stderr)
        return 2
    dataset = args.dataset
    if not dataset:
        from toolbox.data.demo import generate

        src = ws / "demo_src"
        if not (src / "annotations").is_dir():
            generate(src, num_classes=args.num_classes)
        dataset = str(src)
    name = "bench-int8-data"
    if not (ws / "datasets" / name / "annotations").is_dir():
        check(dataset, name=name, workspace=ws)
    flags = cpu_flags()
    print("cpu:", json.dumps(flags), flush=True)
    rows = []
    for size in args.sizes:
        t0 = time.time()
        d = ws / "exports" / f"bench-r18-int8-{size}"
        if not (args.reuse and (d / "model_int8.onnx").is_file()):
            d = export(model="RT-DETR-R18", weights=weights, num_classes=args.num_classes, name=d.name,
                       input_size=size, formats=("onnx-int8",), dataset=name, calib_size=args.calib_size,
                       int8_max_ap_drop=args.max_ap_drop, workspace=ws, progress=False)
            print(f"exported {size}: {d} in {time.time() - t0:.0f} s", flush=True)
        rep = json.loads((d / "export_report.json").read_text())["formats"]["onnx_int8"]
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        feeds = {"images": x, "orig_target_sizes": np.array([[size, size]], np.int64)}
        fp32, int8 = session(d / "model.onnx", args.threads or None), session(d / "model_int8.onnx", args.threads or None)
        ms = alternate({"fp32": lambda: fp32.run(None, feeds), "int8": lambda: int8.run(None, feeds)}, args.runs)
        f, i = statistics.median(ms["fp32"]), statistics.median(ms["int8"])
        rows.append((size, f, i, i / f, rep["check"], rep["quantized"], rep["kept_fp32"]))
        print(f"  {size}: FP32 {f:.1f} ms, INT8 {i:.1f} ms, ratio {i / f:.2f}", flush=True)
        if args.int8_plans:
            plan_curve(d, ws / "datasets" / name, rep, feeds, args)
        if args.int8_recipes:
            recipe_curve(d, ws / "datasets" / name, rep, feeds, args)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}; cpu {flags['cpu']}; "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items() if k != "cpu"))
    print(f"{'size':>6}{'fp32 ms':>10}{'int8 ms':>10}{'ratio':>7}{'AP fp32':>9}{'AP int8':>9}{'AP50 fp32':>10}"
          f"{'AP50 int8':>10}  INT8 stages (FP32 kept)")
    for size, f, i, r, chk, q, kept in rows:
        print(f"{size:>6}{f:>10.1f}{i:>10.1f}{r:>7.2f}{chk['fp32']['AP']:>9.4f}{chk['int8']['AP']:>9.4f}"
              f"{chk['fp32']['AP50']:>10.4f}{chk['int8']['AP50']:>10.4f}  {'+'.join(q)} ({'+'.join(kept) or '-'})")
        if not chk.get("judgeable", True):
            print(f"        FP32 AP {chk['fp32']['AP']:.4f} < {chk['judge_min_ap']}: these weights have not learned "
                  f"the dataset, the AP figures cannot judge INT8 accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
