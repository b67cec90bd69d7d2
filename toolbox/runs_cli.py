"""`python -m toolbox runs list|delete NAME|du`: housekeeping of training runs (checkpoints are large)."""
from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime
from pathlib import Path

from .errors import UsageError
from .events import read_events


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("runs", parents=[common], help="list, measure or delete training runs",
                       description="Housekeeping of workspace/runs/: list runs with status and best AP, "
                                   "show disk usage, delete a run.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", parents=[common], help="list runs with status, epochs and best AP")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_list)
    rm = actions.add_parser("delete", parents=[common], help="delete a run folder and everything in it")
    rm.add_argument("name", help="run name (a folder under workspace/runs/)")
    rm.set_defaults(func=_delete)
    du = actions.add_parser("du", parents=[common], help="disk usage of each run")
    du.set_defaults(func=_du)


def run_summaries(runs_dir: Path) -> list[dict]:
    """One dict per run folder: name, status (from its last event), last step, best AP, size."""
    out = []
    if not runs_dir.is_dir():
        return out
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        status, step, best_ap, started = "unknown", None, None, None
        for ev in read_events(d / "events.jsonl"):
            t = ev.get("type")
            if t == "start":
                status, started = "running", ev.get("time")
            elif t == "log":
                step = ev.get("step", step)
            elif t == "eval":
                ap = (ev.get("metrics") or {}).get("AP")
                if ap is not None and (best_ap is None or ap > best_ap):
                    best_ap = ap
            elif t == "end":
                status = ev.get("status", status)
        out.append({"name": d.name, "status": status, "started": started, "step": step,
                    "best_AP": best_ap, "size_mb": round(_size(d) / 2**20, 1)})
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _list(args) -> int:
    rows = run_summaries(args.workspace.runs)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no runs in {args.workspace.runs}")
    else:
        print(f"{'run':40s} {'status':10s} {'step':>7s} {'best AP':>8s} {'MB':>8s}")
        for r in rows:
            ap = "" if r["best_AP"] is None else f"{r['best_AP']:.3f}"
            print(f"{r['name']:40s} {r['status']:10s} {str(r['step'] or ''):>7s} {ap:>8s} {r['size_mb']:>8.1f}")
    return 0


def _delete(args) -> int:
    d = args.workspace.runs / args.name
    if not d.is_dir() or args.name in ("", ".", "..") or "/" in args.name:
        raise UsageError(f"no run named '{args.name}' in {args.workspace.runs} (see `python -m toolbox runs list`)")
    shutil.rmtree(d)
    print(f"deleted {d}")
    return 0


def _du(args) -> int:
    total = 0
    for r in run_summaries(args.workspace.runs):
        total += r["size_mb"]
        print(f"{r['size_mb']:>10.1f} MB  {r['name']}")
    print(f"{total:>10.1f} MB  total ({args.workspace.runs}, at {datetime.now():%Y-%m-%d %H:%M})")
    return 0
