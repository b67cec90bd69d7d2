"""Training throughput of RT-DETR-R18 on CPU: images/s at 320 and 640, batch 2, and peak RSS.

    python benchmarks/bench_train.py [--sizes 320 640] [--steps 6] [--warmup 2] [--threads 0]
                                     [--against CHECKOUT] [--rounds 2]

Each size runs in a fresh process (so peak RSS is that run's): the real trainer (toolbox.train) on a
synthetic COCO set (64 train / 16 val images of 320x320, 3 classes), random init, the recipe's optimizer,
EMA and augmentation, a fixed input size (no multi-scale). Throughput is read from the run's own `log`
events after `--warmup` steps. Also printed: images per CPU-second of the training process over the
measured steps (a figure that a machine shared with other jobs distorts less than wall time) and the load
average, because a loaded machine slows every wall-clock figure.

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

def train(run, steps):
    t0 = time.process_time()
    out = toolbox.train(dataset={dataset!r}, model="RT-DETR-R18", run=run, workspace={ws!r}, pretrained="none",
                        batch_size=2, input_size={size}, max_steps=steps, log_interval=1, eval_interval=10**6,
                        save_interval=10**6, num_workers=1, progress=False, overrides=["augment.scales_640=null"])
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


def measure(size: int, steps: int, warmup: int, threads: int, ws: Path, dataset: str, root: Path = ROOT) -> dict:
    code = CHILD.format(root=str(root), dataset=dataset, run=f"bench-{size}-{time.time_ns()}", ws=str(ws),
                        size=size, steps=steps, warmup=warmup)
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load0 = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"size {size} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[len("RESULT "):])
    logs = r["logs"][warmup:]  # log_interval 1: each event's images_per_s covers one step
    s_per_iter = sum(2 / e["images_per_s"] for e in logs) / len(logs)
    return {"size": size, "s_per_iter": s_per_iter, "images_per_s": 2 / s_per_iter,
            "images_per_cpu_s": 2 * steps / max(r["cpu_s"], 1e-9), "peak_rss_gib": r["rss_gib"],
            "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--steps", type=int, default=6, help="measured optimizer steps per size (batch 2)")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the average")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the training process (0: the toolbox default, all cores)")
    ap.add_argument("--against", type=Path, help="another checkout (older commit) to alternate with")
    ap.add_argument("--rounds", type=int, default=2, help="with --against: old/new alternations per size")
    args = ap.parse_args()
    versions = [("new", ROOT)] + ([("old", args.against.resolve())] if args.against else [])
    rounds = args.rounds if args.against else 1
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        ws = Path(tmp) / "workspace"
        dataset = make_dataset(ws)
        print(f"RT-DETR-R18 training, batch 2, CPU, OMP_NUM_THREADS={args.threads or 'toolbox default (all cores)'}, "
              f"{os.cpu_count()} CPUs, {args.steps} steps ({args.warmup} warm-up) per size"
              + (f"; new = {ROOT}, old = {args.against}, {rounds} alternations" if args.against else ""))
        print(f"{'code':>4} {'size':>5} {'s/iter':>7} {'img/s':>7} {'img/cpu-s':>9} {'peak RSS':>9} {'load avg':>9}")
        results: dict[tuple[str, int], list[dict]] = {}
        for size in args.sizes:
            for k in range(rounds):
                order = versions if k % 2 == 0 else versions[::-1]  # old-new, new-old: drift cancels
                for name, root in order:
                    r = measure(size, args.steps, args.warmup, args.threads, ws, dataset, root)
                    results.setdefault((name, size), []).append(r)
                    print(f"{name:>4} {size:>5} {r['s_per_iter']:>7.2f} {r['images_per_s']:>7.3f} "
                          f"{r['images_per_cpu_s']:>9.3f} {r['peak_rss_gib']:>8.2f}G "
                          f"{r['load_before']:>4.1f}/{r['load_after']:<4.1f}", flush=True)
        if args.against:
            print("\nnew / old (mean over the alternations):")
            for size in args.sizes:
                def mean(name, key):
                    return sum(r[key] for r in results[(name, size)]) / len(results[(name, size)])
                print(f"  {size}: images/s x{mean('new', 'images_per_s') / mean('old', 'images_per_s'):.3f}, "
                      f"images per CPU-second x{mean('new', 'images_per_cpu_s') / mean('old', 'images_per_cpu_s'):.3f}")
    print("load avg = 1-minute load average before/after; above the CPU count, other jobs share the cores "
          "and wall-clock figures drop accordingly (images per CPU-second drops less).")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
