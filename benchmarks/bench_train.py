"""Training throughput on CPU (RT-DETR-R18 by default; RF-DETR-N beside it): images/s, batch 2, peak RSS.

    python benchmarks/bench_train.py [--sizes 320 640] [--steps 6] [--warmup 2] [--threads 0]
                                     [--models RT-DETR-R18 RF-DETR-N] [--against CHECKOUT] [--rounds 2]

Each size runs in a fresh process (so peak RSS is that run's): the real trainer (toolbox.train) on a
synthetic COCO set (64 train / 16 val images of 320x320, 3 classes), random init, the recipe's optimizer,
EMA and augmentation, a fixed input size (no multi-scale). Throughput is read from the run's own `log`
events after `--warmup` steps. Also printed: images per CPU-second of the training process over the
measured steps (a figure that a machine shared with other jobs distorts less than wall time) and the load
average, because a loaded machine slows every wall-clock figure.

`--models RT-DETR-R18 RF-DETR-N` times both families in one sitting at the same input size and batch
(gradient accumulation 1 for both; RF-DETR through toolbox.rfdetr's trainer with rfdetr's multi-scale off,
RT-DETR with its multi-scale off), alternating their order per round, and prints the RF-DETR / RT-DETR
images/s ratio per size with the load average of those runs.

`--against CHECKOUT` (e.g. a `git worktree add /tmp/old <commit>`) measures that checkout's trainer too,
alternating old and new `--rounds` times in one sitting, and prints new/old ratios: only such same-run
ratios are comparable (absolute figures depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import toolbox
from toolbox.events import read_events

MODEL = {model!r}
RFDETR = MODEL.startswith("RF-DETR")  # rfdetr's own multi-scale off, as RT-DETR's is below

def train(run, steps):
    t0 = time.process_time()
    kw = dict(grad_accum_steps=1) if RFDETR else {{}}
    out = toolbox.train(dataset={dataset!r}, model=MODEL, run=run, workspace={ws!r}, pretrained="none",
                        batch_size=2, input_size={size}, max_steps=steps, log_interval=1, eval_interval=10**6,
                        save_interval=10**6, num_workers=1, progress=False,
                        overrides=["train.multi_scale=false" if RFDETR else "augment.scales_640=null"], **kw)
    return out, time.process_time() - t0

# CPU time of the measured steps = (warm-up + steps run) - (warm-up only run): set-up, final evaluation
# and checkpoint cost the same in both and cancel out
_, cpu_a = train({run!r} + "-a", {warmup})
run, cpu_b = train({run!r} + "-b", {warmup} + {steps})
logs = [e for e in read_events(run / "events.jsonl") if e["type"] == "log"]
print("RESULT " + json.dumps({{"logs": logs, "cpu_s": cpu_b - cpu_a,
      "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def make_dataset(ws_root: Path) -> str:
    from toolbox.data.api import check
    from toolbox.data.demo import generate
    from toolbox.workspace import Workspace

    ws = Workspace(ws_root).ensure()
    src = generate(ws_root.parent / "bench_src", num_train=64, num_val=16, image_size=320, num_classes=3, seed=0)
    report = check(src, name="bench", workspace=ws)
    assert report["check_pass"], report["errors"][:3]
    return "bench"


def measure(size: int, steps: int, warmup: int, threads: int, ws: Path, dataset: str, root: Path = ROOT,
            model: str = "RT-DETR-R18") -> dict:
    code = CHILD.format(root=str(root), dataset=dataset, run=f"bench-{size}-{time.time_ns()}", ws=str(ws),
                        size=size, steps=steps, warmup=warmup, model=model)
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{model} at size {size} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[len("RESULT "):])
    logs = r["logs"][warmup:]  # log_interval 1: each event's images_per_s covers one step
    s_per_iter = sum(2 / e["images_per_s"] for e in logs) / len(logs)
    return {"model": model, "size": size, "s_per_iter": s_per_iter, "images_per_s": 2 / s_per_iter,
            "images_per_cpu_s": 2 * steps / max(r["cpu_s"], 1e-9), "peak_rss_gib": r["rss_gib"],
            "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--steps", type=int, default=6, help="measured optimizer steps per size (batch 2)")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the average")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the training process (0: the toolbox default, all cores)")
    ap.add_argument("--models", nargs="+", default=["RT-DETR-R18"],
                    help="models to time (e.g. RT-DETR-R18 RF-DETR-N: both families at the same size and batch)")
    ap.add_argument("--against", type=Path, help="another checkout (older commit) to alternate with")
    ap.add_argument("--rounds", type=int, default=2, help="with --against or several --models: alternations per size")
    args = ap.parse_args()
    versions = [("new", ROOT)] + ([("old", args.against.resolve())] if args.against else [])
    runs = [(v, root, m) for m in args.models for v, root in versions]
    rounds = args.rounds if len(runs) > 1 else 1
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        ws = Path(tmp) / "workspace"
        dataset = make_dataset(ws)
        print(f"{', '.join(args.models)} training, batch 2, CPU, "
              f"OMP_NUM_THREADS={args.threads or 'toolbox default (all cores)'}, "
              f"{os.cpu_count()} CPUs, {args.steps} steps ({args.warmup} warm-up) per size"
              + (f"; new = {ROOT}, old = {args.against}" if args.against else "")
              + (f"; {rounds} alternations" if rounds > 1 else ""))
        print(f"{'model':>12} {'code':>4} {'size':>5} {'s/iter':>7} {'img/s':>7} {'img/cpu-s':>9} {'peak RSS':>9} "
              f"{'load avg':>9}")
        results: dict[tuple[str, str, int], list[dict]] = {}
        for size in args.sizes:
            for k in range(rounds):
                order = runs if k % 2 == 0 else runs[::-1]  # a-b, b-a: drift cancels
                for name, root, model in order:
                    r = measure(size, args.steps, args.warmup, args.threads, ws, dataset, root, model)
                    results.setdefault((name, model, size), []).append(r)
                    print(f"{model:>12} {name:>4} {size:>5} {r['s_per_iter']:>7.2f} {r['images_per_s']:>7.3f} "
                          f"{r['images_per_cpu_s']:>9.3f} {r['peak_rss_gib']:>8.2f}G "
                          f"{r['load_before']:>4.1f}/{r['load_after']:<4.1f}", flush=True)

        def mean(name, model, size, key):
            rs = results[(name, model, size)]
            return sum(r[key] for r in rs) / len(rs)

        if args.against:
            print("\nnew / old (mean over the alternations):")
            for model in args.models:
                for size in args.sizes:
                    print(f"  {model} {size}: images/s x{mean('new', model, size, 'images_per_s') / mean('old', model, size, 'images_per_s'):.3f}, "
                          f"images per CPU-second x{mean('new', model, size, 'images_per_cpu_s') / mean('old', model, size, 'images_per_cpu_s'):.3f}")
        rf = [m for m in args.models if m.startswith("RF-DETR")]
        rt = [m for m in args.models if not m.startswith("RF-DETR")]
        if rf and rt:
            print(f"\n{rf[0]} / {rt[0]} (same size, batch 2, mean over the alternations):")
            for size in args.sizes:
                loads = [r["load_before"] for m in (rf[0], rt[0]) for r in results[("new", m, size)]]
                print(f"  {size}: images/s {mean('new', rf[0], size, 'images_per_s'):.3f} vs "
                      f"{mean('new', rt[0], size, 'images_per_s'):.3f} = x"
                      f"{mean('new', rf[0], size, 'images_per_s') / mean('new', rt[0], size, 'images_per_s'):.3f}; "
                      f"images per CPU-second x"
                      f"{mean('new', rf[0], size, 'images_per_cpu_s') / mean('new', rt[0], size, 'images_per_cpu_s'):.3f}; "
                      f"load avg {min(loads):.1f}-{max(loads):.1f}")
    print("load avg = 1-minute load average before/after; above the CPU count, other jobs share the cores "
          "and wall-clock figures drop accordingly (images per CPU-second drops less).")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
