"""Evaluate page: COCO-evaluate a run's checkpoint on a dataset split (a job: `python -m toolbox eval`),
then read `runs/<run>/eval/metrics.json` as a COCO table, a per-class AP table, PR curves and drawn
predictions."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import pandas as pd

from ..errors import ToolboxError, UsageError
from .follow import Follower
from .safety import PathGuard
from .widgets import AppContext, api_errors, badge, error_md, intro, list_datasets, list_runs, read_json

METRIC_NAMES = [
    ("AP", "AP @ IoU 0.50:0.95 (the COCO headline figure)"), ("AP50", "AP @ IoU 0.50"),
    ("AP75", "AP @ IoU 0.75"), ("APs", "AP small objects (< 32² px)"), ("APm", "AP medium objects"),
    ("APl", "AP large objects (> 96² px)"), ("AR1", "recall, 1 detection per image"),
    ("AR10", "recall, 10 detections per image"), ("AR100", "recall, 100 detections per image"),
    ("ARs", "recall small"), ("ARm", "recall medium"), ("ARl", "recall large")]
RUN_DATASET = "(the run's dataset)"


def eval_args(run: str, weights: str, dataset: str | None, split: str, threshold: float, vis_count: int,
              device: str = "cpu", *, guard: PathGuard) -> list[str]:
    """The `eval` arguments; the run and dataset fields (names or paths) must pass `guard`."""
    if not run:
        raise UsageError("pick a training run to evaluate (train one on the Train page first)")
    run = guard.check_name_or_path(run, "Run")
    if weights not in (None, "", "best", "last"):
        weights = guard.check_file_or_url(weights, "Checkpoint")
    if dataset and dataset != RUN_DATASET:
        dataset = guard.check_name_or_path(dataset, "Dataset")
    args = ["--run", run, "--weights", weights or "best", "--split", split or "val",
            "--threshold", str(float(threshold)), "--vis-count", str(int(vis_count)), "--device", device or "cpu"]
    if dataset and dataset != RUN_DATASET:
        args += ["--dataset", dataset]
    return args


def metrics_path(ctx: AppContext, run: str | None) -> Path | None:
    return ctx.workspace.runs / run / "eval" / "metrics.json" if run else None


def results(ctx: AppContext, run: str | None):
    """(headline markdown, COCO table, per-class table, PR curve images, drawn predictions)."""
    path = metrics_path(ctx, run)
    data = read_json(path) if path else None
    empty = pd.DataFrame(columns=["metric", "value", "meaning"])
    if not data:
        msg = "No evaluation of this run yet: press **Evaluate**." if run else "Pick a run."
        return msg, empty, pd.DataFrame(columns=["class", "AP", "AP50"]), [], []
    m = data.get("metrics") or {}
    coco = pd.DataFrame([{"metric": k, "value": round(float(m[k]), 4), "meaning": d}
                         for k, d in METRIC_NAMES if m.get(k) is not None])
    per = pd.DataFrame([{"class": c.get("name"), "AP": _r(c.get("AP")), "AP50": _r(c.get("AP50"))}
                        for c in data.get("per_class") or []], columns=["class", "AP", "AP50"])
    root = path.parent
    prs = [(ctx.outbox.publish(root / p), Path(p).stem.replace("_", " ")) for p in data.get("pr_curves") or []
           if (root / p).is_file()]
    vis = [(ctx.outbox.publish(root / p), Path(p).name) for p in data.get("vis") or [] if (root / p).is_file()]
    ap = m.get("AP")
    head = (f"### {html.escape(run)} {badge('ok', f'AP {ap:.3f}' if ap is not None else 'evaluated')}\n"
            f"Weights `{Path(str(data.get('weights', ''))).parent.name}/` on **{data.get('dataset', '?')}** "
            f"({data.get('split', 'val')}, {data.get('num_images', '?')} images, input {data.get('input_size', '?')} px).")
    return head, coco, per, prs, vis


def _r(v):
    return None if v is None else round(float(v), 4)


def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    gr.Markdown(intro("3 · Evaluate",
                      "Measure how well a trained run detects objects on images it did not train on "
                      "(COCO metrics: AP is the main figure, 0 to 1, higher is better). Evaluation runs "
                      "as a background job; the results appear below when it ends."))
    runs = list_runs(ctx.workspace, with_checkpoint=True)
    with gr.Row():
        run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run", elem_id="eval-run",
                          info="a training run with a checkpoint")
        weights = gr.Radio(["best", "last"], value="best", label="Checkpoint", elem_id="eval-weights",
                           info="best: highest validation AP")
        dataset = gr.Dropdown([RUN_DATASET, *list_datasets(ctx.workspace)], value=RUN_DATASET, label="Dataset",
                              elem_id="eval-dataset")
    with gr.Row():
        split = gr.Radio(["val", "test", "train"], value="val", label="Split", elem_id="eval-split")
        threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold of drawn boxes",
                              elem_id="eval-threshold")
        vis_count = gr.Slider(0, 32, value=8, step=1, label="Images to draw", elem_id="eval-vis-count")
    with gr.Row():
        start = gr.Button("Evaluate", variant="primary", elem_id="eval-start")
        refresh_btn = gr.Button("Refresh lists", elem_id="eval-refresh")
    message = gr.Markdown(elem_id="eval-message")
    follower = Follower(ctx, ("eval",), "eval", label="Evaluation job")
    gr.Markdown("### Results")
    head = gr.Markdown(elem_id="eval-head")
    with gr.Row():
        coco = gr.Dataframe(interactive=False, label="COCO metrics", elem_id="eval-coco", scale=3,
                            column_widths=["15%", "15%", "70%"])
        per_class = gr.Dataframe(interactive=False, label="Per-class AP", elem_id="eval-per-class", scale=2)
    prs = gr.Gallery(label="Precision-recall curves", columns=4, height=320, elem_id="eval-pr",
                     object_fit="contain")
    vis = gr.Gallery(label="Predictions drawn on validation images", columns=4, height=420, elem_id="eval-vis")
    shown = gr.State(None)  # (run, metrics.json mtime) on screen, so the timer only reloads new results
    result_outputs = [head, coco, per_class, prs, vis]

    def stamp(r):
        p = metrics_path(ctx, r)
        return (r, p.stat().st_mtime if p and p.is_file() else None)

    def show(r):
        return (*results(ctx, r), stamp(r))

    def on_start(r, w, d, s, t, n):
        try:
            job_id = ctx.jobs.submit("eval", eval_args(r, w, d, s, t, n, guard=ctx.guard), name=r,
                                     out_dir=ctx.workspace.runs / r / "eval")
        except ToolboxError as e:
            return (error_md(e), *follower.skips())
        return (f"Started evaluation job #{job_id} of **{html.escape(r)}**.", *follower.select(job_id))

    def tick(job_id, known, followed, r, on_screen):
        out, _view, _changed = follower.tick(job_id, known, followed)
        now = stamp(r)
        if on_screen is not None and list(on_screen) == list(now):
            return (*out, *[gr.skip()] * len(result_outputs), gr.skip())
        return (*out, *show(r))

    def refresh_lists(current):
        runs_now = list_runs(ctx.workspace, with_checkpoint=True)
        return (gr.update(choices=runs_now, value=current if current in runs_now else (runs_now or [None])[0]),
                gr.update(choices=[RUN_DATASET, *list_datasets(ctx.workspace)]))

    start.click(on_start, [run, weights, dataset, split, threshold, vis_count], [message, *follower.outputs()],
                api_visibility="private")
    run.change(show, [run], [*result_outputs, shown], api_visibility="private")
    refresh_btn.click(refresh_lists, [run], [run, dataset], api_visibility="private")
    tab.select(refresh_lists, [run], [run, dataset], api_visibility="private")
    follower.watch(tick, [*follower.inputs(), run, shown], [*follower.outputs(), *result_outputs, shown])
    demo.load(refresh_lists, [run], [run, dataset], api_visibility="private").then(
        show, [run], [*result_outputs, shown], api_visibility="private")
    return [follower.timer]


def api(ctx: AppContext) -> None:
    def evaluate(run: str, weights: str = "best", dataset: str = "", split: str = "val",
                 threshold: float = 0.5, vis_count: int = 8) -> dict:
        """Start an evaluation job (`python -m toolbox eval`); returns {"job", "run", "status"}. When the job
        is ok, runs/<run>/eval/metrics.json holds the results (also returned by /job's last_eval)."""
        job_id = ctx.jobs.submit("eval", eval_args(run, weights, dataset or None, split, threshold, vis_count,
                                                   guard=ctx.guard),
                                 name=run, out_dir=ctx.workspace.runs / run / "eval")
        return {"job": job_id, "run": run, "status": ctx.jobs.registry.get(job_id)["status"]}

    gr.api(api_errors(evaluate), api_name="eval")
