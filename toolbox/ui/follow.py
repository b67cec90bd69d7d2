"""A job follower block shared by the Train, Evaluate and Export pages: which job, its status and
progress bar, a cancel button and the log tail, refreshed by a timer from the registry and events.jsonl."""
from __future__ import annotations

import html
import os

import gradio as gr

from ..errors import ToolboxError

from .jobs import ACTIVE, JobView, tail
from .pace import ACTIVE_POLL_S, IDLE_POLL_S
from .runs import progress_of
from .widgets import AppContext, badge, progress_html


def job_label(row: dict) -> str:
    name = row.get("name") or ""
    return f"#{row['id']} {name} ({row['status']})".replace("  ", " ")




class Follower:
    """UI block following the jobs of some kinds; `tick` gives fresh values for its outputs, or
    "no update" for all of them while nothing the block shows has changed.

    An idle page must not touch the browser at all: Gradio redraws a progress overlay on every output
    of every call, even one that returns "no update". So the timer's call (`poll`) has a single output,
    an invisible State holding the block's stamp; the page's refresh listens to that State's change
    (`watch`) and runs only when the stamp moved.
    """

    def __init__(self, ctx: AppContext, kinds: tuple[str, ...], prefix: str, label: str = "Job"):
        self.ctx, self.kinds, self.prefix = ctx, kinds, prefix
        choices = self.choices()
        latest = self.default()
        with gr.Group():
            with gr.Row():
                self.job = gr.Dropdown(choices, value=latest, label=label, elem_id=f"{prefix}-job", scale=4,
                                       info="the newest is followed; pick another to look back")
                self.cancel = gr.Button("Cancel", variant="stop", scale=0, elem_id=f"{prefix}-cancel")
            self.status = gr.HTML(elem_id=f"{prefix}-status")
            self.log = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False,
                                  elem_classes=["tb-log"], elem_id=f"{prefix}-log", autoscroll=True)
        self.known = gr.State(choices)  # the choices the browser has, so a tick only resends new ones
        self.shown = gr.State(None)  # the stamp of what the browser shows (see `stamp`)
        self.signal = gr.State(None)  # the stamp `poll` last saw; its change runs the page's refresh
        # the page's refresh timer; the app shell runs it only while the page's tab is shown
        self.timer = gr.Timer(ACTIVE_POLL_S, active=False)
        self.cancel.click(self._cancel, [self.job], [self.status], api_visibility="private")

    # ------------------------------------------------------------------
    def rows(self) -> list[dict]:
        return [r for r in self.ctx.jobs.jobs() if r["kind"] in self.kinds]

    def choices(self) -> list[tuple[str, int]]:
        return [(job_label(r), int(r["id"])) for r in self.rows()]

    def default(self) -> int | None:
        rows = self.rows()
        for r in rows:
            if r["status"] in ACTIVE:
                return int(r["id"])
        return int(rows[0]["id"]) if rows else None

    def view(self, job_id) -> JobView | None:
        if job_id in (None, ""):
            return None
        return self.ctx.jobs.view(int(job_id))

    def status_html(self, view: JobView | None) -> str:
        if view is None:
            return "<div class='tb-progress-label'>No job yet.</div>"
        frac, caption = progress_of(view)
        row = view.row
        head = f"<b>Job #{row['id']}</b> {html.escape(row.get('name') or '')} {badge(view.status)}"
        if view.status in ("failed", "cancelled") and row.get("error"):
            head += f"<div class='tb-progress-label'>Why: {html.escape(str(row['error']))}</div>"
        return head + progress_html(frac, caption)

    def log_text(self, view: JobView | None) -> str:
        if view is None:
            return ""
        return tail(view.row.get("log_path"), lines=40)

    @staticmethod
    def stamp(view: JobView | None, choices: list) -> list:
        """What the block's outputs depend on: the job, its status and error, how many events it has and
        how long its log is, and the job list. Equal stamps mean equal outputs."""
        choices = [list(c) for c in choices]
        if view is None:
            return [None, choices]
        log = view.row.get("log_path")
        try:
            log_size = os.path.getsize(log) if log else None
        except OSError:
            log_size = None
        return [view.id, view.status, view.row.get("error"), len(view.events), log_size, choices]

    @staticmethod
    def interval(view: JobView | None, choices_rows: list[dict]) -> float:
        busy = (view is not None and view.status in ACTIVE) or any(r["status"] in ACTIVE for r in choices_rows)
        return ACTIVE_POLL_S if busy else IDLE_POLL_S

    def poll(self, job_id, signal):
        """The timer's call: (new stamp and poll interval) when the block would change, else no update."""
        view = self.view(job_id)
        rows = self.rows()
        interval = self.interval(view, rows)
        stamp = [*self.stamp(view, [(job_label(r), int(r["id"])) for r in rows]), interval]
        if stamp == signal:
            return gr.skip(), gr.skip()
        return stamp, gr.update(value=interval)

    def watch(self, fn, inputs: list, outputs: list):
        """Run `fn` (the page's refresh) whenever `poll` sees a change; returns the event for `.then`."""
        self.timer.tick(self.poll, [self.job, self.signal], [self.signal, self.timer], api_visibility="private",
                        show_progress="hidden")
        return self.signal.change(fn, inputs, outputs, api_visibility="private", show_progress="hidden")

    def tick(self, job_id, known, shown) -> tuple[tuple, JobView | None, bool]:
        """(values for `outputs()`, the followed job's view, whether anything changed)."""
        view = self.view(job_id)
        rows = self.rows()
        choices = [(job_label(r), int(r["id"])) for r in rows]
        stamp = self.stamp(view, choices)
        if shown is not None and stamp == shown:
            return tuple(gr.skip() for _ in self.outputs()), view, False
        same = [tuple(c) for c in (known or [])] == [tuple(c) for c in choices]
        return ((gr.skip() if same else gr.update(choices=choices), self.status_html(view),
                 self.log_text(view), choices, stamp, gr.update(value=self.interval(view, rows))), view, True)

    def select(self, job_id: int):
        """Outputs (for `outputs()`) that make the follower show a job just started."""
        view = self.view(job_id)
        rows = self.rows()
        choices = [(job_label(r), int(r["id"])) for r in rows]
        return (gr.update(choices=choices, value=job_id), self.status_html(view), self.log_text(view), choices,
                self.stamp(view, choices), gr.update(value=self.interval(view, rows)))

    def inputs(self) -> list:
        return [self.job, self.known, self.shown]

    def outputs(self) -> list:
        return [self.job, self.status, self.log, self.known, self.shown, self.timer]

    def skips(self) -> list:
        """"No update" for every output (an action that failed before starting a job)."""
        return [gr.skip() for _ in self.outputs()]

    def _cancel(self, job_id):
        if job_id in (None, ""):
            return "<div class='tb-progress-label'>No job to cancel.</div>"
        try:
            msg = self.ctx.jobs.cancel(int(job_id))
        except (ToolboxError, OSError) as e:  # a job gone or unknown: say so on the page
            msg = str(e)
        return self.status_html(self.view(job_id)) + f"<div class='tb-progress-label'>{html.escape(msg)}</div>"
