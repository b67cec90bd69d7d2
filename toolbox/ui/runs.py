"""Runs page: every job of the workspace (from the UI or a terminal) with its status, progress and log.

The list is the registry's, so it survives a restart of the app; a running job keeps running while the
app is away and is followed again when it comes back.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from ..errors import ToolboxError

from .jobs import ACTIVE, JobView, tail
from .pace import ACTIVE_POLL_S, IDLE_POLL_S
from .widgets import AppContext, api_errors, badge, error_md, fmt_duration, fmt_time, intro, job_duration, progress_html

COLUMNS = ["job", "kind", "name", "status", "progress", "started", "duration", "result"]


def progress_of(view: JobView) -> tuple[float | None, str]:
    """(fraction done, one-line caption) from a job's events."""
    status = view.status
    if status == "queued":
        return None, "queued: waits for its device to be free"
    end = view.last("end")
    log = view.last("log")
    if end is not None or status not in ACTIVE:
        frac = 1.0 if status == "ok" else (None if not log else _fraction(log))
        return frac, status
    if log is None:
        started = view.last("start")
        if view.row.get("kind") in ("check", "convert"):
            return None, "importing… (its log says how far)"
        return 0.0, "starting…" if started is None else "started, waiting for the first step"
    frac = _fraction(log)
    parts = []
    if log.get("epoch") is not None:
        parts.append(f"epoch {log['epoch']}")
    if log.get("step") is not None:
        total = log.get("total_steps")
        parts.append(f"step {log['step']}" + (f"/{total}" if total else ""))
    if frac is not None:
        parts.append(f"{frac * 100:.0f} %")
    if log.get("eta_s") is not None:
        parts.append(f"ETA {fmt_duration(log['eta_s'])}")
    if log.get("images_per_s"):
        parts.append(f"{float(log['images_per_s']):.1f} img/s")
    return frac, " · ".join(parts)


def _fraction(log: dict) -> float | None:
    try:
        step, total = float(log.get("step")), float(log.get("total_steps"))
        return step / total if total > 0 else None
    except (TypeError, ValueError):
        return None


def jobs_table(ctx: AppContext) -> pd.DataFrame:
    rows = []
    for row in ctx.jobs.jobs():
        view = ctx.jobs.view(int(row["id"]))
        frac, caption = progress_of(view) if view else (None, "")
        result = row.get("error") or ("" if row.get("exit_code") is None else f"exit {row['exit_code']}")
        if row["status"] == "ok":
            result = "done"
        rows.append({"job": int(row["id"]), "kind": row["kind"], "name": row.get("name") or _guess_name(row),
                     "status": badge(row["status"]),
                     "progress": caption if row["status"] in ACTIVE else
                     ("" if frac is None else f"{frac * 100:.0f} %"),
                     "started": fmt_time(row.get("started")), "duration": job_duration(row),
                     "result": str(result)[:160]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _guess_name(row: dict) -> str:
    args = row.get("args") or []
    for flag in ("--run", "--name", "--export"):
        if flag in args and args.index(flag) + 1 < len(args):
            return str(args[args.index(flag) + 1])
    return ""


def job_detail(ctx: AppContext, job_id) -> tuple[str, str, str]:
    """(header markdown, progress html, log tail) for one job."""
    if job_id in (None, ""):
        return "Pick a job in the table (click its row) to see its details.", "", ""
    view = ctx.jobs.view(int(job_id))
    if view is None:
        return f"No job {job_id}.", "", ""
    row = view.row
    frac, caption = progress_of(view)
    cmd = " ".join(str(a) for a in row.get("args") or [])
    lines = [f"### Job {row['id']} · {row['kind']} {badge(view.status)}",
             f"`python -m toolbox {cmd}`"]
    if row.get("out_dir"):
        lines.append(f"Output folder: `{row['out_dir']}`")
    if row.get("error") and view.status in ("failed", "cancelled"):
        lines.append(f"**Why it stopped:** {row['error']}")
    log_path = row.get("log_path")
    if not log_path and row.get("out_dir"):
        log_path = f"{row['out_dir']}/train.log"
    return "\n\n".join(lines), progress_html(frac, caption), tail(log_path, lines=60)


def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    gr.Markdown(intro("Runs and jobs",
                      "Every training, evaluation, export and deploy job of this workspace, whether started "
                      "here or from a terminal (`python -m toolbox ...`). Jobs keep running when you close "
                      "the browser or restart the app. Click a row to follow it; cancel stops its whole "
                      "process group."))
    table = gr.Dataframe(value=lambda: jobs_table(ctx), headers=COLUMNS, interactive=False, wrap=True,
                         datatype=["number", "str", "str", "html", "str", "str", "str", "str"],
                         elem_id="runs-table", label="Jobs", max_height=420)
    with gr.Row():
        job_id = gr.Number(label="Job", precision=0, elem_id="runs-job-id", scale=1, minimum=0)
        refresh = gr.Button("Refresh", scale=0, elem_id="runs-refresh")
        cancel = gr.Button("Cancel job", variant="stop", scale=0, elem_id="runs-cancel")
    message = gr.Markdown(elem_id="runs-message")
    header = gr.Markdown(elem_id="runs-detail")
    progress = gr.HTML(elem_id="runs-progress")
    log = gr.Textbox(label="Log (last lines)", lines=14, max_lines=14, interactive=False,
                     elem_classes=["tb-log"], elem_id="runs-log", autoscroll=True)
    timer = gr.Timer(ACTIVE_POLL_S, active=False)  # the shell runs it while this tab is shown
    signal = gr.State(None)  # the table and detail `poll` last saw; its change redraws them (see follow.py)

    def on_select(evt: gr.SelectData, df: pd.DataFrame):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            return int(df.iloc[int(row)]["job"])
        except (IndexError, KeyError, ValueError, TypeError):
            return gr.skip()

    def refresh_all(jid):
        return (jobs_table(ctx), *job_detail(ctx, jid))

    def poll(jid, seen):
        """The timer's call: a new signal (and pace) only when the table or the detail would change."""
        table_now = jobs_table(ctx)
        interval = ACTIVE_POLL_S if ctx.jobs.latest_active() is not None else IDLE_POLL_S
        key = [table_now.to_json(), *job_detail(ctx, jid), interval]
        if key == seen:
            return gr.skip(), gr.skip()
        return key, gr.update(value=interval)

    def do_cancel(jid):
        if jid in (None, ""):
            return "Pick a job first."
        try:
            return ctx.jobs.cancel(int(jid))
        except (ToolboxError, OSError) as e:  # a job gone or unknown: say so on the page
            return error_md(e)

    table.select(on_select, [table], [job_id], api_visibility="private")
    job_id.change(lambda j: job_detail(ctx, j), [job_id], [header, progress, log], api_visibility="private")
    refresh.click(refresh_all, [job_id], [table, header, progress, log], api_visibility="private")
    tab.select(refresh_all, [job_id], [table, header, progress, log], api_visibility="private")
    timer.tick(poll, [job_id, signal], [signal, timer], api_visibility="private", show_progress="hidden")
    signal.change(refresh_all, [job_id], [table, header, progress, log], api_visibility="private",
                  show_progress="hidden")
    cancel.click(do_cancel, [job_id], [message], api_visibility="private").then(
        refresh_all, [job_id], [table, header, progress, log], api_visibility="private")
    return [timer]


# ---------------------------------------------------------------------- API endpoints
PUBLIC_FIELDS = ("id", "kind", "name", "args", "status", "exit_code", "error", "started", "ended", "out_dir")


def api(ctx: AppContext) -> None:
    def jobs() -> list[dict]:
        """Every job of the workspace, newest first: id, kind, name, args, status, exit_code, error, times."""
        return [{k: r.get(k) for k in PUBLIC_FIELDS} for r in ctx.jobs.jobs()]

    def job(job_id: int) -> dict:
        """One job: its registry row, progress (0..1 or null), caption, last log/eval/end events."""
        view = ctx.jobs.view(int(job_id))
        if view is None:
            return {"id": int(job_id), "status": "unknown", "error": f"no job {job_id}"}
        frac, caption = progress_of(view)
        return {**{k: view.row.get(k) for k in PUBLIC_FIELDS}, "progress": frac, "caption": caption,
                "last_log": view.last("log"), "last_eval": view.last("eval"), "end": view.last("end")}

    def cancel(job_id: int) -> str:
        """Cancel a queued or running job (SIGTERM to its process group)."""
        return ctx.jobs.cancel(int(job_id))

    gr.api(api_errors(jobs), api_name="jobs")
    gr.api(api_errors(job), api_name="job")
    gr.api(api_errors(cancel), api_name="cancel")
