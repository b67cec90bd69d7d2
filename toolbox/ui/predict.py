"""Predict page: upload an image, pick a run (Paddle weights) or an export (ONNX Runtime), set a
threshold, see the boxes drawn and listed. Short work, so it runs in the app process through the same
function as `python -m toolbox predict` (toolbox.engine.api.predict)."""
from __future__ import annotations

import threading

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData

from ..errors import ToolboxError, UsageError
from .predictors import KEEP_PER_MODEL, find_source, predict_one
from .widgets import AppContext, api_errors, badge, error_md, intro, list_exports, list_runs

COLUMNS = ["class", "score", "x1", "y1", "x2", "y2"]
_LOCK = threading.Lock()  # one prediction at a time: Paddle on 2 cores gains nothing from more


def sources(ctx: AppContext) -> list[tuple[str, str]]:
    """Dropdown choices: exports first (what you deploy), then runs (their best checkpoint)."""
    out = [(f"export · {e} (ONNX Runtime)", f"export:{e}") for e in list_exports(ctx.workspace)]
    out += [(f"run · {r} (best checkpoint)", f"run:{r}") for r in list_runs(ctx.workspace, with_checkpoint=True)]
    return out


def run_predict(ctx: AppContext, image: str, source: str, threshold: float = 0.5) -> dict:
    """Detect objects in one image file; returns the predict result for it (boxes, vis_path, ...) plus
    `model_reused` (the model was already loaded) and `load_s` (seconds spent loading it)."""
    if not image:
        raise UsageError("upload an image first")
    if not source or ":" not in source:
        raise UsageError("pick a run or an export (train or export one first)")
    kind, name = source.split(":", 1)
    if kind not in ("run", "export"):
        raise UsageError(f"unknown source '{source}': use run:NAME or export:NAME")
    name = ctx.guard.check_name_or_path(name, "Model")
    path = ctx.guard.check(image)
    if not path.is_file():
        raise UsageError(f"{path} is not a file: upload an image")
    src = find_source(ctx.workspace, kind, name)
    with _LOCK:
        result, reused, load_s = predict_one(ctx.workspace, ctx.predictors, src, path, float(threshold))
    return {**result, "model_reused": reused, "load_s": round(load_s, 2)}


def boxes_table(result: dict) -> pd.DataFrame:
    rows = []
    for b in result.get("boxes") or []:
        x1, y1, x2, y2 = (round(float(v), 1) for v in b.get("coordinate") or [0, 0, 0, 0])
        rows.append({"class": b.get("label", b.get("cls_id")), "score": round(float(b.get("score", 0)), 3),
                     "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return pd.DataFrame(rows, columns=COLUMNS)


def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> None:
    gr.Markdown(intro("5 · Try it",
                      "Upload a picture and see what your model finds. Pick an export (the model you will "
                      "ship, run with ONNX Runtime) or a training run (its best checkpoint). The two most "
                      "recently used models stay loaded, so the next picture is quick. Each result is saved "
                      f"in `predictions/<model>/`; the last {KEEP_PER_MODEL} per model are kept, older "
                      "ones are deleted."))
    choices = sources(ctx)
    with gr.Row():
        with gr.Column(scale=2):
            image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], elem_id="predict-image",
                             height=360)
            source = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model",
                                 elem_id="predict-source")
            threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold",
                                  info="boxes scoring below are hidden", elem_id="predict-threshold")
            with gr.Row():
                go = gr.Button("Detect", variant="primary", elem_id="predict-run")
                refresh = gr.Button("Refresh models", elem_id="predict-refresh")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="predict-status")
            drawn = gr.Image(label="Detections", interactive=False, elem_id="predict-drawn", type="filepath",
                             height=360, buttons=["download", "fullscreen"])
            table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Boxes", elem_id="predict-table")

    def on_detect(img, src, thr):
        try:
            res = run_predict(ctx, img, src, thr)
        except ToolboxError as e:
            return error_md(e), None, pd.DataFrame(columns=COLUMNS)
        n = len(res.get("boxes") or [])
        loaded = "model already loaded" if res["model_reused"] else f"model loaded in {res['load_s']:.1f} s"
        msg = (f"{badge('ok', f'{n} object' + ('' if n == 1 else 's'))} found with score ≥ {thr:.2f} · "
               f"{loaded}")
        return msg, ctx.outbox.publish(res.get("vis_path")), boxes_table(res)

    go.click(on_detect, [image, source, threshold], [status, drawn, table], api_visibility="private")
    def refresh_sources(current):
        now = sources(ctx)
        values = [v for _, v in now]
        return gr.update(choices=now, value=current if current in values else (values or [None])[0])

    refresh.click(refresh_sources, [source], [source], api_visibility="private")
    demo.load(refresh_sources, [source], [source], api_visibility="private")
    tab.select(refresh_sources, [source], [source], api_visibility="private")


def api(ctx: AppContext) -> None:
    def predict(image: FileData, source: str = "", threshold: float = 0.5) -> dict:
        """Detect objects in an uploaded image with `run:NAME` or `export:NAME` (default: the newest
        export, else the newest run). Returns {"source", "detections": [{cls_id, label, score,
        coordinate [x1, y1, x2, y2]}], "model_reused": whether the model was already loaded}."""
        src = source or (sources(ctx) or [(None, "")])[0][1]
        file = image.get("path") if isinstance(image, dict) else getattr(image, "path", image)
        res = run_predict(ctx, str(file), src, threshold)
        return {"source": src, "detections": res.get("boxes") or [], "model_reused": res["model_reused"]}

    def models() -> list[str]:
        """The sources predict accepts: export:NAME and run:NAME."""
        return [v for _, v in sources(ctx)]

    gr.api(api_errors(predict), api_name="predict")
    gr.api(api_errors(models), api_name="models")
