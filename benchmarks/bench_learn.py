"""Does it learn what it has not seen? RT-DETR-R18 from scratch on the built-in demo dataset (4 classes,
120 train / 30 val images), trained on the train split with the toolbox's defaults, evaluated on the val
split after every epoch; prints val AP and AP50 against wall time and the trainer's CPU time.

    python benchmarks/bench_learn.py [--minutes 20] [--input-size 160] [--batch-size 4] [--epochs 30]
                                     [--points 2] [--device cpu|gpu] [--amp] [--workspace DIR]

The trainer runs as `python -m toolbox train` in its own process (as a user would start it) and is
cancelled (SIGTERM, its normal cancel) at --minutes of wall time; its `eval` events give the curve. The
table lists, at every --points minutes, the latest evaluation done by then, with the trainer's CPU seconds
(read from /proc when the evaluation appeared) and the 1-minute load average: on a machine shared with
other jobs the wall-clock figures stretch, the CPU figures much less. `--epochs` sets the run's planned
length (it decides the automatic warm-up: 5 % of the planned steps); the clock usually stops it first.
Target: val AP50 >= 0.5 within 20 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of the training run")
    ap.add_argument("--input-size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30, help="planned epochs (sets the automatic warm-up)")
    ap.add_argument("--points", type=float, default=2.0, help="table rows every this many minutes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--workspace", help="keep the run here (default: a temporary folder)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from toolbox.data.demo import ensure_demo_dataset
    from toolbox.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bench_learn_") as tmp:
        ws = Workspace(Path(args.workspace) if args.workspace else Path(tmp) / "workspace").ensure()
        dataset = ensure_demo_dataset(ws)
        run = f"learn-{datetime.now():%Y%m%d-%H%M%S}"
        cmd = [sys.executable, "-m", "toolbox", "--workspace", str(ws.root), "train", "--dataset", dataset,
               "--model", "RT-DETR-R18", "--pretrained", "none", "--run", run,
               "--input-size", str(args.input_size), "--batch-size", str(args.batch_size),
               "--epochs", str(args.epochs), "--eval-interval", "1", "--save-interval", str(10 ** 6),
               "--log-interval", "10", "--device", args.device, "--no-progress"] + (["--amp"] if args.amp else [])
        print(f"RT-DETR-R18 from scratch on the demo set, input {args.input_size}, batch {args.batch_size}, "
              f"{args.epochs} planned epochs, device {args.device}{' amp' if args.amp else ''}, "
              f"{os.cpu_count()} CPUs, budget {args.minutes:g} min; load avg at start {os.getloadavg()[0]:.1f}",
              flush=True)
        events_path = ws.runs / run / "events.jsonl"
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        curve: list[dict] = []
        seen = 0
        deadline = t0 + args.minutes * 60
        try:
            while proc.poll() is None:
                if time.time() >= deadline:
                    proc.send_signal(signal.SIGTERM)  # the trainer's cancel: ends with an `end` event
                    break
                evals = [e for e in read_events(events_path) if e["type"] == "eval"]
                for e in evals[seen:]:
                    m = e["metrics"]
                    point = {"wall_min": (time.time() - t0) / 60, "cpu_min": (cpu_seconds(proc.pid) or 0) / 60,
                             "epoch": e["epoch"], "step": e["step"], "AP": m["AP"] or 0.0, "AP50": m["AP50"] or 0.0,
                             "load": os.getloadavg()[0]}
                    curve.append(point)
                    print(f"  eval  epoch {point['epoch']:>3}  step {point['step']:>5}  wall {point['wall_min']:5.1f} min  "
                          f"cpu {point['cpu_min']:5.1f} min  AP {point['AP']:.4f}  AP50 {point['AP50']:.4f}  "
                          f"load {point['load']:.1f}", flush=True)
                seen = len(evals)
                time.sleep(1.0)
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            raise
        if proc.returncode not in (0, 130) and not curve:
            raise SystemExit(f"training failed (exit {proc.returncode}):\n{(err or '')[-3000:]}")
        log = (ws.runs / run / "train.log")
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines()[:3]:
                print("  log: " + line.split(" ", 2)[-1])
        print(f"\n{'minute':>6} {'epoch':>5} {'step':>5} {'cpu min':>7} {'val AP':>7} {'val AP50':>8} {'load':>5}")
        minute = args.points
        while minute <= args.minutes + 1e-9:
            done = [p for p in curve if p["wall_min"] <= minute]
            if done:
                p = done[-1]
                print(f"{minute:>6g} {p['epoch']:>5} {p['step']:>5} {p['cpu_min']:>7.1f} {p['AP']:>7.4f} "
                      f"{p['AP50']:>8.4f} {p['load']:>5.1f}")
            else:
                print(f"{minute:>6g} {'-':>5} {'-':>5} {'-':>7} {'-':>7} {'-':>8}")
            minute += args.points
        best = max(curve, key=lambda p: p["AP50"], default=None)
        if best:
            print(f"best val AP50 {best['AP50']:.4f} (AP {best['AP']:.4f}) at {best['wall_min']:.1f} min, epoch "
                  f"{best['epoch']}; target AP50 >= 0.5 within 20 min: {'met' if best['AP50'] >= 0.5 else 'not met'}")
        print(f"load avg at the end {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs; above that, other jobs "
              f"share the cores)")


if __name__ == "__main__":
    main()
