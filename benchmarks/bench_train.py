"""Training throughput of RT-DETR-R18 on CPU: images/s at 320 and 640, batch 2, and peak RSS.

    python benchmarks/bench_train.py [--sizes 320 640] [--steps 6] [--warmup 2] [--threads 0]

Each size runs in a fresh process (so peak RSS is that run's): the real trainer (toolbox.train) on a
synthetic COCO set like the reference measurement's (64 train / 16 val images of 320x320, 3 classes),
random init, the recipe's optimizer, EMA and augmentation, a fixed input size (no multi-scale, as in the
reference's fixed-size figures). Throughput is read from the run's own `log` events after `--warmup`
steps. Also printed: images per CPU-second of the training process over the measured steps (a figure
that a machine shared with other jobs distorts less than wall time; PaddleDetection's reference used about
one core, so its images per CPU-second is close to its images/s) and the load average, because a loaded
machine slows every wall-clock figure.

Reference (../shared/reference/peer_figures.md, PaddleDetection's trainer on these 2-core machines):
0.62 images/s at 320 (3.24 s/iter, peak RSS 1.8 GiB) and 0.24 images/s at 640 (8.28 s/iter, 2.6 GiB);
the target is 1.2x those.
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
REFERENCE = {320: (0.62, 1.8), 640: (0.24, 2.6)}

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


def measure(size: int, steps: int, warmup: int, threads: int, ws: Path, dataset: str) -> dict:
    code = CHILD.format(root=str(ROOT), dataset=dataset, run=f"bench-{size}-{time.time_ns()}", ws=str(ws),
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        ws = Path(tmp) / "workspace"
        dataset = make_dataset(ws)
        print(f"RT-DETR-R18 training, batch 2, CPU, OMP_NUM_THREADS={args.threads or 'toolbox default (all cores)'}, {os.cpu_count()} CPUs, "
              f"{args.steps} steps ({args.warmup} warm-up) per size")
        print(f"{'size':>5} {'s/iter':>7} {'img/s':>7} {'ref img/s':>9} {'x ref':>6} {'img/cpu-s':>9} "
              f"{'peak RSS':>9} {'ref RSS':>8} {'load avg':>9}")
        for size in args.sizes:
            r = measure(size, args.steps, args.warmup, args.threads, ws, dataset)
            ref_ips, ref_rss = REFERENCE.get(size, (float("nan"), float("nan")))
            print(f"{size:>5} {r['s_per_iter']:>7.2f} {r['images_per_s']:>7.3f} {ref_ips:>9.2f} "
                  f"{r['images_per_s'] / ref_ips:>6.2f} {r['images_per_cpu_s']:>9.3f} {r['peak_rss_gib']:>8.2f}G "
                  f"{ref_rss:>7.1f}G {r['load_before']:>4.1f}/{r['load_after']:<4.1f}", flush=True)
    print("load avg = 1-minute load average before/after; above the CPU count, other jobs share the cores "
          "and wall-clock figures drop accordingly (images per CPU-second drops less).")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
