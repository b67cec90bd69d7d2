"""Data page: import a dataset (folder path or uploaded archive), check it, re-split it, read the report.

Importing a folder or an archive is a job (`python -m toolbox check|convert PATH`, see jobs.py): a big
archive takes minutes, so it shows its log, can be cancelled, and survives a page reload. Checking a
dataset already in the workspace and re-splitting are short and run in the app process, through the
same functions as the CLI (toolbox.data.api). The page shows the report of `datasets/<name>/check_dataset_result.json` as a
pass/fail badge, a counts table, the problem list (file, annotation, reason), the class histogram and
the drawn samples.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData

from ..errors import InputError, ToolboxError, UsageError
from .follow import Follower
from .jobs import ACTIVE
from .safety import WORKSPACE_NAME
from .widgets import AppContext, api_errors, badge, error_md, intro, list_datasets, read_json

FORMATS = ["auto", "coco", "roboflow", "voc", "yolo", "labelme"]
REPORT = "check_dataset_result.json"
ARCHIVE_TYPES = [".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz"]


# ---------------------------------------------------------------------- actions (UI and API share them)
def run_import(ctx: AppContext, path: str, name: str = "", format: str = "auto", fix: bool = False,
               overwrite: bool = False, strict: bool = True) -> tuple[str, dict | None, str | None]:
    """Import + check a dataset like `check` (strict) or `convert`; returns (name, report, error text).

    A dataset that fails its check still has a report: the error text says why it failed.
    """
    from ..data import api as data_api

    src = ctx.guard.check(path)
    if not src.exists():
        raise UsageError(f"{src} does not exist: type the folder or archive of your dataset")
    name = (name or "").strip() or _default_name(src)
    report = data_api.convert(str(src), name=name, format=format or "auto", fix=bool(fix),
                              overwrite=bool(overwrite), workspace=ctx.workspace)
    error = data_api.failure_line(report) if strict and not report.get("check_pass") else None
    return name, load_report(ctx, name) or report, error


def in_workspace(ctx: AppContext, src: Path) -> bool:
    """True for a dataset folder already in the workspace (datasets/<name>/): checked in place."""
    return src.parent == ctx.workspace.datasets.resolve() and (src / "annotations").is_dir()


def start_import(ctx: AppContext, path: str, name: str = "", format: str = "auto", fix: bool = False,
                 overwrite: bool = False, strict: bool = True) -> tuple[str, int | None, dict | None, str | None]:
    """Import a folder or archive as a job, or check a workspace dataset in place.

    Returns (dataset name, job id or None when it ran in place, report, error text)."""
    src = ctx.guard.check(path)
    if not src.exists():
        raise UsageError(f"{src} does not exist: type the folder or archive of your dataset")
    if in_workspace(ctx, src):
        ds, report, error = run_import(ctx, str(src), name or src.name, format, fix, overwrite, strict)
        return ds, None, report, error
    name = (name or "").strip() or _default_name(src)
    if not WORKSPACE_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"dataset name '{name}' may only hold letters, digits, '_', '-', '.' and '+'")
    args = [str(src), "--name", name, "--format", format or "auto"]
    args += ["--fix"] if fix else []
    args += ["--overwrite"] if overwrite else []
    job = ctx.jobs.submit("check" if strict else "convert", args, name=name, out_dir=ctx.workspace.datasets / name)
    return name, job, None, None


def _default_name(src: Path) -> str:
    from ..data.importer import default_name

    return default_name(src)  # the CLI's rule (CONTRACTS.md), so both name a dataset alike


def run_split(ctx: AppContext, name: str, train_percent: float, val_percent: float | None = None,
              seed: int = 0) -> dict | None:
    """Re-split train+val by percent (val defaults to the rest); returns the re-check's report."""
    from ..data import api as data_api

    if not name:
        raise UsageError("pick a dataset to re-split")
    val = 100.0 - float(train_percent) if val_percent in (None, "") else float(val_percent)
    try:
        data_api.split(name, float(train_percent), val, seed=int(seed or 0), workspace=ctx.workspace)
    except InputError:
        pass  # the report written by the re-check says what is wrong
    return load_report(ctx, name)


def load_report(ctx: AppContext, name: str | None) -> dict | None:
    if not name:
        return None
    return read_json(ctx.workspace.datasets / name / REPORT)


# ---------------------------------------------------------------------- report rendering
def summary_md(name: str, report: dict | None, error: str | None = None) -> str:
    if report is None:
        return (f"{badge('failed', 'no report')} {html.escape(error)}" if error
                else "No dataset checked yet: type a path or upload an archive, then press **Check**.")
    attrs = report.get("attributes") or {}
    ok = bool(report.get("check_pass"))
    status = badge("ok", "check passed") if ok else badge("failed", "check failed")
    n_err, n_warn = issue_count(report, "errors"), issue_count(report, "warnings")
    lines = [f"### {html.escape(name)} {status}",
             f"Format found: **{report.get('source_format') or 'coco'}** · "
             f"{attrs.get('num_classes', '?')} classes: {', '.join(map(str, attrs.get('class_names') or []))}",
             f"{n_err} error(s), {n_warn} warning(s)."]
    if ok:
        lines.append("Ready to train: go to **2 · Train** and pick this dataset.")
    else:
        lines.append("Fix the problems listed below in your files (or tick *Drop invalid boxes* and check "
                     "again), then re-run the check.")
    if error:
        lines.append(f"<small>{html.escape(error)}</small>")
    return "\n\n".join(lines)


def issue_count(report: dict, kind: str) -> int:
    """Total errors or warnings: the report lists at most 1,000 per code and split, `*_counts` has all."""
    counts = report.get(f"{kind[:-1]}_counts")
    return int(sum(counts.values())) if counts else len(report.get(kind) or [])


def counts_table(report: dict | None) -> pd.DataFrame:
    if not report:
        return pd.DataFrame(columns=["what", "count"])
    attrs = report.get("attributes") or {}
    analysis = report.get("analysis") or {}
    sizes = analysis.get("box_sizes") or {}
    rows = [("classes", attrs.get("num_classes")),
            ("train images", attrs.get("train_samples")),
            ("val images", attrs.get("val_samples")),
            ("test images", attrs.get("test_samples")),
            ("small boxes (< 32²)", sizes.get("small")),
            ("medium boxes", sizes.get("medium")),
            ("large boxes (> 96²)", sizes.get("large")),
            ("images without boxes", analysis.get("images_without_boxes")),
            ("errors", issue_count(report, "errors")),
            ("warnings", issue_count(report, "warnings"))]
    return pd.DataFrame([(k, int(v)) for k, v in rows if v is not None], columns=["what", "count"])


def classes_table(report: dict | None) -> pd.DataFrame:
    """Boxes per class and split (the histogram's numbers)."""
    per = ((report or {}).get("analysis") or {}).get("boxes_per_class") or {}
    names = list(((report or {}).get("attributes") or {}).get("class_names") or [])
    if not per:
        return pd.DataFrame({"class": names})
    df = pd.DataFrame(per).reindex(names).fillna(0).astype(int)
    df.index.name = "class"
    return df.reset_index()


def problems_table(report: dict | None, limit: int = 500) -> pd.DataFrame:
    cols = ["severity", "file", "annotation", "problem"]
    if not report:
        return pd.DataFrame(columns=cols)
    rows = []
    for severity in ("errors", "warnings"):
        for p in (report.get(severity) or [])[:limit]:
            rows.append({"severity": severity[:-1], "file": p.get("file") or "",
                         "annotation": "" if p.get("annotation_id") is None else str(p.get("annotation_id")),
                         "problem": p.get("problem") or p.get("code") or ""})
    return pd.DataFrame(rows, columns=cols)


def report_images(ctx: AppContext, name: str, report: dict | None) -> tuple[str | None, list]:
    """(histogram path, [(sample path, caption)]) resolved against the dataset folder."""
    if not report:
        return None, []
    root = ctx.workspace.datasets / name
    hist = (report.get("analysis") or {}).get("histogram")
    hist_path = ctx.outbox.publish(root / hist) if hist else None
    attrs = report.get("attributes") or {}
    samples = []
    for split in ("train", "val", "test"):
        for rel in attrs.get(f"{split}_sample_paths") or []:
            served = ctx.outbox.publish(root / rel)
            if served:
                samples.append((served, f"{split}: {Path(rel).name}"))
    return hist_path, samples


def show(ctx: AppContext, name: str | None, error: str | None = None):
    report = load_report(ctx, name)
    hist, samples = report_images(ctx, name or "", report)
    return (summary_md(name or "", report, error), counts_table(report), classes_table(report),
            problems_table(report), hist, samples)


# ---------------------------------------------------------------------- page
def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    gr.Markdown(intro("1 · Your data",
                      "Point at a dataset folder or archive (COCO, Roboflow-COCO, Pascal VOC, YOLO or LabelMe "
                      "are detected), or upload a zip. The toolbox copies it into the workspace as COCO, "
                      "checks every box and image, and tells you exactly what to fix. The built-in "
                      "**demo** dataset is ready to try."))
    datasets = list_datasets(ctx.workspace)
    default = ctx.settings.get("demo") if ctx.settings.get("demo") in datasets else (datasets[0] if datasets else None)
    with gr.Row():
        with gr.Column(scale=3):
            path = gr.Textbox(label="Dataset folder or archive on this machine",
                              placeholder="/home/aistudio/data/data12345/my_set.zip", elem_id="data-path",
                              info="Must lie in the workspace or a folder given with --data-dir.")
            upload = gr.File(label="…or upload an archive", file_types=ARCHIVE_TYPES, elem_id="data-upload",
                             height=130)
        with gr.Column(scale=2):
            name = gr.Textbox(label="Name in the workspace", placeholder="default: the folder's name",
                              elem_id="data-name")
            fmt = gr.Dropdown(FORMATS, value="auto", label="Format", info="auto detects it from the files",
                              elem_id="data-format")
            with gr.Row():
                fix = gr.Checkbox(label="Drop invalid boxes", value=False,
                                  info="lists each one it drops", elem_id="data-fix")
                overwrite = gr.Checkbox(label="Replace a dataset of the same name", value=False,
                                        elem_id="data-overwrite")
    with gr.Row():
        check_btn = gr.Button("Check", variant="primary", elem_id="data-check")
        convert_btn = gr.Button("Import without failing", elem_id="data-convert")
    message = gr.Markdown(elem_id="data-message")
    # not in a closed accordion: Gradio mounts no component there, so its timer would never tick
    follower = Follower(ctx, ("check", "convert"), "import", label="Import job")
    reported = gr.State(None)  # (job, status) whose report is on screen
    gr.Markdown("### Report")
    with gr.Row():
        picker = gr.Dropdown(datasets, value=default, label="Dataset", elem_id="data-dataset",
                             info="datasets already in the workspace", scale=3)
        reload_btn = gr.Button("Refresh list", scale=0, elem_id="data-reload")
    status = gr.Markdown(elem_id="data-status")
    with gr.Row():
        with gr.Column(scale=1):
            counts = gr.Dataframe(headers=["what", "count"], interactive=False, label="Counts",
                                  elem_id="data-counts")
            classes = gr.Dataframe(interactive=False, label="Boxes per class", elem_id="data-classes")
        hist = gr.Image(label="Class histogram", interactive=False, elem_id="data-histogram", scale=2,
                        type="filepath", buttons=["fullscreen"])
    problems = gr.Dataframe(headers=["severity", "file", "annotation", "problem"], interactive=False,
                            label="Problems (file and reason)", elem_id="data-problems", wrap=True,
                            max_height=300, column_widths=["10%", "25%", "10%", "55%"])
    gallery = gr.Gallery(label="Samples with their boxes", columns=6, height=340, elem_id="data-samples",
                         allow_preview=True, object_fit="contain")
    with gr.Accordion("Re-split train / validation", open=False):
        gr.Markdown("Shuffle the train and val images of the picked dataset into new parts. "
                    "The old annotation files are kept as `.bak`.")
        with gr.Row():
            train_pct = gr.Slider(10, 95, value=80, step=5, label="train % (the rest is val)",
                                  elem_id="data-train-pct")
            seed = gr.Number(value=0, precision=0, label="seed")
        split_btn = gr.Button("Re-split", elem_id="data-split")

    outputs = [status, counts, classes, problems, hist, gallery]

    def do_import(p, up, n, f, fx, ow, strict):
        source = up if up else p
        try:
            ds, job, _report, err = start_import(ctx, source, n, f, fx, ow, strict=strict)
        except ToolboxError as e:
            return (error_md(e), *[gr.skip()] * len(outputs), gr.skip(), *follower.skips())
        if job is None:  # checked in place
            return ("", *show(ctx, ds, err), gr.update(choices=list_datasets(ctx.workspace), value=ds),
                    *follower.skips())
        return (f"Importing **{html.escape(ds)}** as job #{job}: its progress is in the log below; the report "
                "appears when it ends.", *[gr.skip()] * len(outputs), gr.skip(), *follower.select(job))

    def follow_import(job_id, known, shown, on_screen):
        """The import job's block; when the followed job has ended, its dataset's report (once)."""
        out, view, _changed = follower.tick(job_id, known, shown)
        if view is None or view.status in ACTIVE or [view.id, view.status] == on_screen:
            return (*out, *[gr.skip()] * len(outputs), gr.skip(), gr.skip())
        ds = view.row.get("name") or ""
        error = view.row.get("error") if view.status != "ok" else None
        if load_report(ctx, ds) is None:
            return (*out, summary_md(ds, None, error or "the import wrote no report"),
                    *[gr.skip()] * (len(outputs) - 1), gr.skip(), [view.id, view.status])
        return (*out, *show(ctx, ds, error), gr.update(choices=list_datasets(ctx.workspace), value=ds),
                [view.id, view.status])

    def do_split(n, tr, s):
        try:
            run_split(ctx, n, tr, None, s)
        except ToolboxError as e:
            return (error_md(e), *[gr.skip()] * (len(outputs) - 1))
        return show(ctx, n)

    started = [message, *outputs, picker, *follower.outputs()]
    check_btn.click(lambda *a: do_import(*a, True), [path, upload, name, fmt, fix, overwrite], started,
                    api_visibility="private")
    convert_btn.click(lambda *a: do_import(*a, False), [path, upload, name, fmt, fix, overwrite], started,
                      api_visibility="private")
    follower.watch(follow_import, [*follower.inputs(), reported],
                   [*follower.outputs(), *outputs, picker, reported])
    picker.change(lambda n: show(ctx, n), [picker], outputs, api_visibility="private")
    reload_btn.click(lambda: gr.update(choices=list_datasets(ctx.workspace)), None, [picker],
                     api_visibility="private")
    split_btn.click(do_split, [picker, train_pct, seed], outputs, api_visibility="private")
    # show the picked dataset's report (and a fresh list) whenever the page is opened
    demo.load(lambda n: (*show(ctx, n), gr.update(choices=list_datasets(ctx.workspace))), [picker],
              [*outputs, picker], api_visibility="private")
    return [follower.timer]


# ---------------------------------------------------------------------- API endpoints
def api(ctx: AppContext) -> None:
    def check(path: str = "", name: str = "", format: str = "auto", fix: bool = False, overwrite: bool = False,
              archive: FileData | None = None) -> dict:
        """Import a dataset (a folder or archive on the server, or an uploaded archive) and check it.

        Returns {"name", "check_pass", "error", "report"} where report is check_dataset_result.json."""
        return _api_import(ctx, path, name, format, fix, overwrite, archive, strict=True)

    def convert(path: str = "", name: str = "", format: str = "auto", fix: bool = False,
                overwrite: bool = False, archive: FileData | None = None) -> dict:
        """Like check, but a dataset with errors is still imported (look before fixing)."""
        return _api_import(ctx, path, name, format, fix, overwrite, archive, strict=False)

    def split(name: str, train_percent: float = 80, val_percent: float = 20, seed: int = 0) -> dict:
        """Re-split a workspace dataset's train+val images by percent (train + val = 100); returns the report."""
        try:
            report = run_split(ctx, name, train_percent, val_percent, seed)
        except ToolboxError as e:
            return {"name": name, "check_pass": False, "error": str(e), "report": None}
        return {"name": name, "check_pass": bool(report and report.get("check_pass")), "error": None,
                "report": report}

    def datasets() -> list[str]:
        """Names of the datasets in the workspace."""
        return list_datasets(ctx.workspace)

    gr.api(api_errors(check), api_name="check")
    gr.api(api_errors(convert), api_name="convert")
    gr.api(api_errors(split), api_name="split")
    gr.api(api_errors(datasets), api_name="datasets")


def _api_import(ctx, path, name, format, fix, overwrite, archive, strict: bool) -> dict:
    """The endpoint waits for the import job (it is recorded, listed on the Runs page and cancellable
    there like any job) and answers with its report, as `python -m toolbox check` would."""
    source = _file_path(archive) or path
    try:
        ds, job, report, err = start_import(ctx, source, name, format, fix, overwrite, strict=strict)
    except ToolboxError as e:
        return {"name": name or None, "check_pass": False, "error": str(e), "report": None}
    if job is not None:
        row = ctx.jobs.wait(job, timeout=24 * 3600)
        report = load_report(ctx, ds)
        err = row.get("error") if row.get("status") != "ok" else None
    return {"name": ds, "job": job, "check_pass": bool(report and report.get("check_pass")), "error": err,
            "report": report}


def _file_path(f) -> str | None:
    if not f:
        return None
    if isinstance(f, dict):
        return f.get("path")
    return getattr(f, "path", None) or str(f)
