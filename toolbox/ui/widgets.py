"""Small pieces every page shares: the app context, status badges, workspace listings, error display.

Pages return Markdown/HTML and tables, never raw JSON: these helpers keep that consistent.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..errors import ToolboxError
from ..workspace import Workspace
from .jobs import JobManager
from .outbox import Outbox
from .predictors import PredictorCache
from .safety import PathGuard

BADGE_CLASS = {"ok": "ok", "pass": "ok", "running": "running", "queued": "queued", "failed": "failed",
               "fail": "failed", "cancelled": "cancelled", "unknown": "queued", "warning": "queued"}


@dataclass
class AppContext:
    """What the pages share: the workspace, its jobs, the path guard, and the outbox of served files."""

    workspace: Workspace
    jobs: JobManager
    guard: PathGuard
    settings: dict = field(default_factory=dict)
    outbox: Outbox = field(default_factory=Outbox)
    predictors: PredictorCache = field(default_factory=PredictorCache)


def badge(status: str, text: str | None = None) -> str:
    cls = BADGE_CLASS.get(status, "queued")
    return f'<span class="tb-badge tb-{cls}">{html.escape(text or status)}</span>'


def intro(title: str, text: str) -> str:
    """The heading and short explanation at the top of a step."""
    return f"## {title}\n{text}"


def error_md(e: BaseException) -> str:
    """A user-facing error as one readable block (never a traceback)."""
    if isinstance(e, ToolboxError):
        return f'{badge("failed", "error")} {html.escape(str(e))}'
    return f'{badge("failed", "error")} unexpected {type(e).__name__}: {html.escape(str(e))}'


def guarded(fn: Callable[..., Any], n_outputs: int) -> Callable[..., Any]:
    """Wrap a UI callback: a ToolboxError becomes a message in the first output, the rest unchanged."""
    import gradio as gr

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ToolboxError as e:
            msg = error_md(e)
            return (msg, *[gr.skip() for _ in range(n_outputs - 1)]) if n_outputs > 1 else msg

    wrapper.__name__ = getattr(fn, "__name__", "callback")
    wrapper.__doc__ = fn.__doc__
    return wrapper


def api_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For gr.api endpoints: a ToolboxError reaches the client as a gr.Error with its one-line message."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ToolboxError as e:
            raise gr.Error(str(e), print_exception=False) from None

    return wrapper


# ---------------------------------------------------------------------- workspace listings
def list_datasets(ws: Workspace) -> list[str]:
    d = ws.datasets
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "annotations").is_dir())


def list_runs(ws: Workspace, with_checkpoint: bool = False) -> list[str]:
    d = ws.runs
    if not d.is_dir():
        return []
    runs = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if with_checkpoint:
        # RT-DETR runs hold model.pdparams, RF-DETR runs rfdetr's model.pth (CONTRACTS "Files")
        runs = [p for p in runs if any((p / "checkpoints" / c / f).is_file()
                                       for c in ("best", "last") for f in ("model.pdparams", "model.pth"))]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def list_exports(ws: Workspace) -> list[str]:
    d = ws.exports
    if not d.is_dir():
        return []
    ex = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")  # .<name>.*.tmp: in progress
          and not p.name.endswith((".failed", ".old", ".tmp")) and (p / "infer_cfg.yml").is_file()]
    return [p.name for p in sorted(ex, key=lambda p: p.stat().st_mtime, reverse=True)]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------- formatting
def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def fmt_time(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")


def job_duration(row: dict) -> str:
    start = row.get("started")
    if not start:
        return ""
    end = row.get("ended") or (time.time() if row.get("status") == "running" else None)
    return fmt_duration(end - start) if end else ""


def progress_html(fraction: float | None, label: str = "") -> str:
    """A thin progress bar with a caption (fraction in 0..1, or None for 'not started')."""
    pct = 0.0 if fraction is None else max(0.0, min(1.0, float(fraction))) * 100
    return (f'<div class="tb-progress"><div class="tb-bar" style="width:{pct:.1f}%"></div></div>'
            f'<div class="tb-progress-label">{html.escape(label)}</div>')


CSS = """
.tb-badge {display:inline-block; padding:1px 9px; border-radius:999px; font-size:0.85em; font-weight:600;
  color:#fff; vertical-align:middle;}
.tb-ok {background:#16a34a;} .tb-running {background:#2563eb;} .tb-queued {background:#6b7280;}
.tb-failed {background:#dc2626;} .tb-cancelled {background:#d97706;}
.tb-progress {width:100%; height:10px; background:#e5e7eb; border-radius:6px; overflow:hidden; margin-top:4px;}
.tb-bar {height:100%; background:linear-gradient(90deg,#2563eb,#16a34a); transition:width .5s;}
.tb-progress-label {font-size:0.9em; color:#4b5563; margin-top:3px;}
.tb-hero {padding: 4px 0 0 0;}
.tb-step {font-size:0.95em; color:#374151;}
#tb-log textarea, .tb-log textarea {font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;}
"""
