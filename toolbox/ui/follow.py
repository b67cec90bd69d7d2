"""A job follower block shared by the Train, Evaluate and Export pages: which job, its status and
progress bar, a cancel button and the log tail, refreshed by a timer from the registry and events.jsonl."""
from __future__ import annotations

import html

import gradio as gr

from ..errors import ToolboxError

from .jobs import ACTIVE, JobView, tail
from .runs import progress_of
from .widgets import AppContext, badge, progress_html


def job_label(row: dict) -> str:
    name = row.get("name") or ""
    return f"#{row['id']} {name} ({row['status']})".replace("  ", " ")


class Follower:
    """UI block following the jobs of some kinds; `tick` gives fresh values for its outputs."""

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

    def tick(self, job_id, known):
        """(dropdown update, status html, log, known choices) for the followed job."""
        view = self.view(job_id)
        choices = self.choices()
        same = [tuple(c) for c in (known or [])] == [tuple(c) for c in choices]
        return (gr.skip() if same else gr.update(choices=choices), self.status_html(view),
                self.log_text(view), choices)

    def select(self, job_id: int):
        """Outputs (for `outputs()`) that make the follower show a job just started."""
        view = self.view(job_id)
        choices = self.choices()
        return gr.update(choices=choices, value=job_id), self.status_html(view), self.log_text(view), choices

    def inputs(self) -> list:
        return [self.job, self.known]

    def outputs(self) -> list:
        return [self.job, self.status, self.log, self.known]

    def _cancel(self, job_id):
        if job_id in (None, ""):
            return "<div class='tb-progress-label'>No job to cancel.</div>"
        try:
            msg = self.ctx.jobs.cancel(int(job_id))
        except (ToolboxError, OSError) as e:  # a job gone or unknown: say so on the page
            msg = str(e)
        return self.status_html(self.view(job_id)) + f"<div class='tb-progress-label'>{html.escape(msg)}</div>"
