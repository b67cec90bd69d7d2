"""Export & deploy page: export a run to Paddle / ONNX (FP32, INT8 for CPUs) / RKNN (a job: `python -m toolbox export`), read
its export report (each format's check and parity figures), then build SDK zips for the chosen targets
(a job: `python -m toolbox deploy`) and download them, one button per zip."""
from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr
import pandas as pd

from ..deploy.targets import TARGETS
from ..errors import ToolboxError, UsageError
from .follow import Follower
from .safety import PathGuard
from .widgets import AppContext, api_errors, badge, error_md, intro, list_exports, list_runs, read_json

FORMATS = [("Paddle inference model", "paddle"), ("ONNX", "onnx"), ("ONNX INT8 (CPUs)", "onnx-int8"),
           ("RKNN (RK3588 NPU)", "rknn")]
# What each family exports (toolbox/export/api.py: RF-DETR has ONNX, and RKNN as far as rknn-toolkit2 converts
# it), and what the form ticks for it: the family's CLI default
FAMILY_FORMATS = {"paddle": (FORMATS, ["paddle", "onnx"]),
                  "rfdetr": ([f for f in FORMATS if f[1] in ("onnx", "rknn")], ["onnx"])}


def formats_for_run(ws, run: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(format choices, ticked) for the picked run's family, so an RF-DETR run is not offered Paddle."""
    from ..rfdetr.dispatch import family

    return FAMILY_FORMATS.get(family(ws, run=run) if run else "paddle", FAMILY_FORMATS["paddle"])


TARGET_HELP = {
    "linux-cpu-python": "Linux · CPU · Python", "linux-gpu-python": "Linux · NVIDIA GPU · Python",
    "windows-cpu-python": "Windows · CPU · Python", "windows-gpu-python": "Windows · NVIDIA GPU · Python",
    "linux-cpu-cpp": "Linux · CPU · C++", "linux-gpu-cpp": "Linux · NVIDIA GPU · C++",
    "windows-cpu-cpp": "Windows · CPU · C++", "windows-gpu-cpp": "Windows · NVIDIA GPU · C++",
    "rk3588-python": "RK3588 NPU · Python", "rk3588-cpp": "RK3588 NPU · C++",
}


def targets() -> list[str]:
    return list(TARGETS)


INT8_AP_DROP_POINTS = 1.0   # the CLI's --int8-max-ap-drop default (0.010) in AP points, as the form shows it


def export_args(run: str, weights: str, name: str, formats: list[str], input_size, fp16_onnx: bool,
                rknn_quant: str, calib_size, *, guard: PathGuard, int8_calib_size=0,
                int8_max_ap_drop_points=INT8_AP_DROP_POINTS) -> tuple[list[str], str]:
    """The `export` arguments; the run field (a name or a path) and a weights path must pass `guard`.

    `calib_size` is the RKNN slider; `int8_calib_size` the ONNX INT8 one (0: the format's default, 200) and
    `int8_max_ap_drop_points` its accuracy limit in AP points. The CLI has one --calib-size for both INT8
    formats, so two different counts for one export are refused rather than one silently dropped."""
    if not run:
        raise UsageError("pick a training run to export")
    run = guard.check_name_or_path(run, "Run")
    if weights not in (None, "", "best", "last"):
        weights = guard.check_file_or_url(weights, "Checkpoint")
    if not formats:
        raise UsageError("tick at least one format")
    name = (name or "").strip() or Path(run).name
    if not re.fullmatch(r"[\w][\w.+-]*", name):
        raise UsageError(f"export name '{name}' may only hold letters, digits, '_', '-', '.', '+'")
    order = [f for _, f in FORMATS if f in formats]
    args = ["--run", run, "--weights", weights or "best", "--name", name, "--formats", ",".join(order)]
    if input_size:
        args += ["--input-size", str(int(input_size))]
    if fp16_onnx and "onnx" in order:
        args.append("--fp16-onnx")
    if "rknn" in order:
        args += ["--rknn-quant", rknn_quant or "fp16", "--calib-size", str(int(calib_size or 32))]
    if "onnx-int8" in order:
        n = int(int8_calib_size or 0)
        if n and "rknn" not in order:
            args += ["--calib-size", str(n)]
        elif n and n != int(calib_size or 32):
            raise UsageError(f"one calibration count serves both INT8 formats: ONNX INT8 asks {n}, RKNN "
                             f"{int(calib_size or 32)}; set the same count or export them separately")
        points = float(INT8_AP_DROP_POINTS if int8_max_ap_drop_points in (None, "") else int8_max_ap_drop_points)
        if not 0 <= points <= 100:
            raise UsageError(f"INT8 max AP drop is in AP points (0-100), got {points:g}")
        if points != INT8_AP_DROP_POINTS:
            args += ["--int8-max-ap-drop", f"{points / 100:g}"]
    return args, name


def deploy_args(export: str, chosen: list[str], *, guard: PathGuard) -> list[str]:
    """The `deploy` arguments; the export field (a name or a path) must pass `guard`."""
    if not export:
        raise UsageError("pick an export (export a run above first)")
    export = guard.check_name_or_path(export, "Export")
    if not chosen:
        raise UsageError("tick at least one SDK target")
    return ["--export", export, "--target", ",".join(chosen)]


# ---------------------------------------------------------------------- report rendering
def report_view(ctx: AppContext, name: str | None):
    """(headline markdown, formats table, parity/figures table) of exports/<name>/export_report.json."""
    cols_f = ["format", "check", "files", "size (MB)"]
    cols_p = ["format", "figure", "value"]
    if not name:
        return "No export yet.", pd.DataFrame(columns=cols_f), pd.DataFrame(columns=cols_p)
    folder = ctx.workspace.exports / name
    rep = read_json(folder / "export_report.json")
    if rep is None:
        return f"`{name}` has no export report.", pd.DataFrame(columns=cols_f), pd.DataFrame(columns=cols_p)
    rows, figures = [], []
    for fmt, entry in (rep.get("formats") or {}).items():
        files = [str(f) for f in entry.get("files") or []]
        size = sum((folder / f).stat().st_size for f in files if (folder / f).is_file()) / 2**20
        passed = entry.get("passed")
        rows.append({"format": fmt, "check": "passed" if passed else ("failed" if passed is False else "—"),
                     "files": ", ".join(files), "size (MB)": round(size, 2)})
        for key, value in _flatten(entry.get("check") or {}):
            figures.append({"format": fmt, "figure": key, "value": value})
    src = rep.get("source") or {}
    ok = rep.get("ok")
    head = (f"### Export {html.escape(name)} {badge('ok' if ok else 'failed', 'checks passed' if ok else 'failed')}\n"
            f"From run **{html.escape(str(src.get('run') or src.get('model') or '?'))}** · "
            f"{src.get('num_classes', '?')} classes · input {src.get('input_size', '')} · "
            f"folder `{folder}`")
    warnings = rep.get("warnings") or []
    if warnings:
        head += "\n\n" + "\n".join(f"- ⚠ {html.escape(str(w))}" for w in warnings[:8])
    if rep.get("error"):
        head += f"\n\n**Error:** {html.escape(str(rep['error']))}"
    return head, pd.DataFrame(rows, columns=cols_f), pd.DataFrame(figures, columns=cols_p)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            if len(v) <= 6 and all(not isinstance(x, (dict, list)) for x in v):
                out.append((key, ", ".join(_fmt(x) for x in v)))
        else:
            out.append((key, _fmt(v)))
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def zip_path(ctx: AppContext, export: str | None, target: str) -> Path | None:
    if not export:
        return None
    p = ctx.workspace.sdk / f"{export}-{target}.zip"
    return p if p.is_file() else None


def download_updates(ctx: AppContext, export: str | None) -> list:
    ups = []
    for t in targets():
        p = zip_path(ctx, export, t)
        label = f"⬇ {t} ({p.stat().st_size / 2**20:.1f} MB)" if p else t
        ups.append(gr.update(value=ctx.outbox.publish(p) if p else None, visible=p is not None, label=label))
    return ups


# ---------------------------------------------------------------------- page
def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    gr.Markdown(intro("4 · Export and deploy",
                      "Turn a trained run into models your device runs: the Paddle inference model, ONNX, and "
                      "RKNN for the RK3588 NPU. Each format is checked against the original model (the "
                      "parity figures below). Then build a ready-to-run SDK zip per target: model, config, "
                      "labels, demo code, build files and a README."))
    runs = list_runs(ctx.workspace, with_checkpoint=True)
    with gr.Row():
        run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run", elem_id="export-run")
        weights = gr.Radio(["best", "last"], value="best", label="Checkpoint", elem_id="export-weights")
        name = gr.Textbox(label="Export name", placeholder="default: the run's name", elem_id="export-name")
    with gr.Row():
        choices, ticked = formats_for_run(ctx.workspace, runs[0] if runs else None)
        formats = gr.CheckboxGroup(choices, value=ticked, label="Formats", elem_id="export-formats",
                                   info="ONNX INT8: for CPUs, calibrated on training images and checked by "
                                        "val AP (fails when it drops by more than the limit in ONNX INT8 "
                                        "options, 1 point by default); RKNN needs "
                                        "rknn-toolkit2 (x86_64 Linux)")
        input_size = gr.Number(value=None, precision=0, label="Input size", elem_id="export-input-size",
                               info="0: the run's training size")
        fp16_onnx = gr.Checkbox(value=False, label="Also an FP16 ONNX (GPUs)", elem_id="export-fp16-onnx")
    with gr.Accordion("RKNN options", open=False):
        with gr.Row():
            rknn_quant = gr.Radio(["fp16", "int8"], value="fp16", label="RKNN precision", elem_id="export-rknn-quant",
                                  info="int8: faster, calibrated on training images (decoder kept in fp16)")
            calib_size = gr.Slider(1, 256, value=32, step=1, label="RKNN INT8 calibration images",
                                   elem_id="export-calib-size")
    with gr.Accordion("ONNX INT8 options", open=False):
        with gr.Row():
            int8_calib = gr.Slider(0, 1000, value=0, step=1, label="ONNX INT8 calibration images",
                                   elem_id="export-int8-calib-size",
                                   info="training images the ranges are measured on; 0: 200 (all when fewer)")
            int8_drop = gr.Number(value=INT8_AP_DROP_POINTS, label="Max AP drop (AP points)",
                                  elem_id="export-int8-max-ap-drop",
                                  info="the export fails when INT8 val AP is lower than FP32's by more")
    with gr.Row():
        start = gr.Button("Export", variant="primary", elem_id="export-start")
        refresh_btn = gr.Button("Refresh lists", elem_id="export-refresh")
    message = gr.Markdown(elem_id="export-message")
    follower = Follower(ctx, ("export", "deploy"), "export", label="Export / deploy job")
    gr.Markdown("### Export report")
    exports = list_exports(ctx.workspace)
    export_pick = gr.Dropdown(exports, value=exports[0] if exports else None, label="Export",
                              elem_id="export-pick")
    head = gr.Markdown(elem_id="export-head")
    with gr.Row():
        fmt_table = gr.Dataframe(interactive=False, label="Formats and their checks", elem_id="export-formats-table",
                                 wrap=True, scale=3)
        parity = gr.Dataframe(interactive=False, label="Parity figures", elem_id="export-parity", scale=2,
                              max_height=320)
    gr.Markdown("### SDK zips")
    tlist = targets()
    chosen = gr.CheckboxGroup([(TARGET_HELP.get(t, t), t) for t in tlist], value=["linux-cpu-python"],
                              label="Targets", elem_id="deploy-targets",
                              info="RK3588 targets need an export with the RKNN format")
    deploy_btn = gr.Button("Build SDK zips", variant="primary", elem_id="deploy-start")
    with gr.Row(elem_id="deploy-downloads"):
        buttons = [gr.DownloadButton(t, visible=False, elem_id=f"dl-{t}", size="md") for t in tlist]
    shown = gr.State(None)
    result_outputs = [head, fmt_table, parity, *buttons]

    def fingerprint(e):
        rep = ctx.workspace.exports / e / "export_report.json" if e else None
        zips = sorted((p.name, p.stat().st_mtime) for p in ctx.workspace.sdk.glob(f"{e}-*.zip")) if e else []
        return [e, rep.stat().st_mtime if rep and rep.is_file() else None, zips]

    def show(e):
        return (*report_view(ctx, e), *download_updates(ctx, e), fingerprint(e))

    def on_export(r, w, n, f, s, fp, q, c, ic, drop):
        try:
            args, export_name = export_args(r, w, n, f, s, fp, q, c, guard=ctx.guard, int8_calib_size=ic,
                                            int8_max_ap_drop_points=drop)
            job_id = ctx.jobs.submit("export", args, name=export_name, out_dir=ctx.workspace.exports / export_name)
        except ToolboxError as e:
            return (error_md(e), *follower.skips())
        return (f"Started export job #{job_id}: **{html.escape(export_name)}**.", *follower.select(job_id))

    def on_deploy(e, t):
        try:
            job_id = ctx.jobs.submit("deploy", deploy_args(e, t, guard=ctx.guard), name=e, out_dir=ctx.workspace.sdk)
        except ToolboxError as err:
            return (error_md(err), *follower.skips())
        return (f"Started deploy job #{job_id}: {len(t)} zip(s) for **{html.escape(e)}**.", *follower.select(job_id))

    def tick(job_id, known, followed, e, on_screen):
        out, _view, _changed = follower.tick(job_id, known, followed)
        exports_now = list_exports(ctx.workspace)
        if (e is None or e not in exports_now) and exports_now:
            e = exports_now[0]
            return (*out, gr.update(choices=exports_now, value=e), *show(e))
        if on_screen is not None and list(on_screen) == fingerprint(e):
            return (*out, gr.skip(), *[gr.skip()] * len(result_outputs), gr.skip())
        return (*out, gr.update(choices=exports_now), *show(e))

    def refresh_lists(r, e):
        runs_now, exports_now = list_runs(ctx.workspace, with_checkpoint=True), list_exports(ctx.workspace)
        return (gr.update(choices=runs_now, value=r if r in runs_now else (runs_now or [None])[0]),
                gr.update(choices=exports_now, value=e if e in exports_now else (exports_now or [None])[0]))

    def on_run(r):
        choices, ticked = formats_for_run(ctx.workspace, r)
        return gr.update(choices=choices, value=ticked)

    run.change(on_run, [run], [formats], api_visibility="private")
    start.click(on_export, [run, weights, name, formats, input_size, fp16_onnx, rknn_quant, calib_size, int8_calib,
                            int8_drop],
                [message, *follower.outputs()], api_visibility="private")
    deploy_btn.click(on_deploy, [export_pick, chosen], [message, *follower.outputs()], api_visibility="private")
    export_pick.change(show, [export_pick], [*result_outputs, shown], api_visibility="private")
    refresh_btn.click(refresh_lists, [run, export_pick], [run, export_pick], api_visibility="private")
    tab.select(refresh_lists, [run, export_pick], [run, export_pick], api_visibility="private")
    follower.watch(tick, [*follower.inputs(), export_pick, shown],
                   [*follower.outputs(), export_pick, *result_outputs, shown])
    demo.load(refresh_lists, [run, export_pick], [run, export_pick], api_visibility="private").then(
        show, [export_pick], [*result_outputs, shown], api_visibility="private")
    return [follower.timer]


def api(ctx: AppContext) -> None:
    def export(run: str, weights: str = "best", name: str = "", formats: str = "paddle,onnx",
               input_size: int = 0, fp16_onnx: bool = False, rknn_quant: str = "fp16", calib_size: int = 32,
               int8_calib_size: int = 0, int8_max_ap_drop_points: float = INT8_AP_DROP_POINTS) -> dict:
        """Start an export job (`python -m toolbox export`); returns {"job", "export", "status"}."""
        args, export_name = export_args(run, weights, name, [f.strip() for f in formats.split(",") if f.strip()],
                                        input_size or None, fp16_onnx, rknn_quant, calib_size, guard=ctx.guard,
                                        int8_calib_size=int8_calib_size,
                                        int8_max_ap_drop_points=int8_max_ap_drop_points)
        job_id = ctx.jobs.submit("export", args, name=export_name, out_dir=ctx.workspace.exports / export_name)
        return {"job": job_id, "export": export_name, "status": ctx.jobs.registry.get(job_id)["status"]}

    def deploy(export: str, targets: str = "linux-cpu-python") -> dict:
        """Start a deploy job building sdk/<export>-<target>.zip for each target (comma list or 'all')."""
        job_id = ctx.jobs.submit("deploy", deploy_args(export, [t.strip() for t in targets.split(",") if t.strip()],
                                                       guard=ctx.guard),
                                 name=export, out_dir=ctx.workspace.sdk)
        return {"job": job_id, "export": export, "status": ctx.jobs.registry.get(job_id)["status"]}

    gr.api(api_errors(export), api_name="export")
    gr.api(api_errors(deploy), api_name="deploy")
