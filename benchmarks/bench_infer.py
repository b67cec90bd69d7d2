"""CPU inference latency of an exported RT-DETR-R18: onnxruntime and Paddle Inference, batch 1.

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


if __name__ == "__main__":
    sys.exit(main())
