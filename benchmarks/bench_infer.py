"""CPU inference latency of an exported RT-DETR-R18: onnxruntime and Paddle Inference, batch 1.

    .venv/bin/python benchmarks/bench_infer.py [--sizes 640 320] [--runs 50] [--paddle-runs 50]
        [--weights PATH.pdparams --num-classes N] [--workspace DIR] [--threads T]

Exports RT-DETR-R18 with `toolbox.export` (paddle + onnx, each checked as usual) at each size, then times
`session.run` / `predictor.run` on a fixed input (median of --runs after 3 warm-up runs; preprocessing
excluded, as in the peer figures). Weights: ../shared/reference/conformance_r18_320_c3/weights.pdparams
(3 classes) when present, else a seeded random initialisation (latency does not depend on the values).

Figures to match or beat (PaddleDetection's own export on a 2-core machine, ../shared/reference/
peer_figures.md): onnxruntime 104.5 ms (320) / 306.5 ms (640); Paddle Inference 385 / 1,476 ms.
The script prints the load average: on a shared machine the figures are upper bounds.
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
PEER = {("onnxruntime", 320): 104.5, ("onnxruntime", 640): 306.5, ("paddle", 320): 385.0, ("paddle", 640): 1476.0}


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
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads or os.cpu_count() or 1))

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
    print(f"{'runtime':<18}{'size':>6}{'median ms':>12}{'min ms':>10}{'cpu ms':>10}{'runs':>6}{'peer ms':>10}"
          f"{'ratio':>8}")
    for rt, size, med, mn, cpu, n in rows:
        peer = PEER.get((rt, size))
        print(f"{rt:<18}{size:>6}{med:>12.1f}{mn:>10.1f}{cpu:>10.1f}{n:>6}{peer or float('nan'):>10.1f}"
              f"{(med / peer if peer else float('nan')):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
