"""Train page: pick a model from the zoo and a dataset, set the options, start / cancel / resume a
training job, and watch its loss, learning-rate and mAP curves, progress and log live.

Training is a job (`python -m toolbox train ...` in its own process group, see jobs.py); this page only
builds the command line and follows the run's events.jsonl.
"""
from __future__ import annotations

import argparse
import html
import re
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from ..engine.cli import positive_float
from ..engine.config import TRAIN_DEFAULTS, model_recipe, parse_overrides
from ..errors import ToolboxError, UsageError
from ..models import list_models, load_config
from .follow import Follower
from . import plan as P
from .curves import PlotsShown, curves, run_summary, series_of
from .jobs import ACTIVE, JobView
from .safety import PathGuard
from .widgets import AppContext, api_errors, error_md, fmt_duration, intro, list_datasets

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"

AMP_HELP = "faster on recent GPUs; off on the CPU (the engine only runs it on a GPU)"

# (flag, label, kind, help) for every training option; kind: int, float, text, bool, choice:a|b; int? and float?
# are numbers that may be left blank (the engine then derives them), shown as text boxes
OPTIONS = [
    ("--epochs", "Epochs", "int", "passes over the training images"),
    ("--max-steps", "Max steps", "int", "stop after this many steps (0: no limit); handy for a quick try"),
    ("--batch-size", "Batch size (per device)", "int", "images per step on each device; lower it on out-of-memory"),
    ("--grad-accum-steps", "Gradient accumulation", "int", "steps summed before each update (a bigger effective batch)"),
    ("--lr", "Learning rate", "float?", "blank: the recipe's base rate (1e-4), used as given at any batch (the log shows the rate in use)"),
    ("--warmup-steps", "Warm-up steps", "int?", "linear learning-rate warm-up at the start; blank: 5 % of the planned steps, at most 2000 (the plan shows the number)"),
    ("--input-size", "Input size", "int", "square training size S in pixels (multiple of 32); blank: the model's"),
    ("--sampling", "Decoder sampling", "choice:grid|discrete", "discrete: the deployment-friendly RT-DETRv2 variant"),
    ("--eval-interval", "Evaluate every (epochs)", "int", "how often mAP on the validation set is measured"),
    ("--save-interval", "Save every (epochs)", "int", "how often the last checkpoint is written"),
    ("--log-interval", "Log every (steps)", "int", "how often loss and lr are logged (and plotted)"),
    ("--early-stop-patience", "Early-stop patience", "int", "evaluations without a better AP before stopping; 0: never"),
    ("--num-workers", "Data workers", "int", "processes decoding images"),
    ("--seed", "Seed", "int", "same seed, same data order and initialisation"),
    ("--amp", "Mixed precision (GPU)", "bool", AMP_HELP),
]
DEFAULT_KEYS = {"--epochs": "epochs", "--max-steps": "max_steps", "--batch-size": "batch_size",
                "--grad-accum-steps": "grad_accum_steps", "--lr": "lr", "--warmup-steps": "warmup_steps",
                "--eval-interval": "eval_interval", "--save-interval": "save_interval",
                "--log-interval": "log_interval", "--early-stop-patience": "early_stop_patience",
                "--num-workers": "num_workers", "--seed": "seed", "--amp": "amp"}


# ---------------------------------------------------------------------- model zoo
def zoo_rows() -> list[dict]:
    """The model-zoo rows (toolbox.models.list_models), named for a table."""
    return [{"model": m["name"], "backbone": m.get("backbone") or "", "COCO AP": m.get("ap"), "AP50": m.get("ap50"),
             "params (M)": m.get("params_m"), "GFLOPs": m.get("gflops"), "FPS (T4 TRT fp16)": m.get("fps_t4")}
            for m in list_models()]


def model_names() -> list[str]:
    return [r["model"] for r in zoo_rows()]


def option_defaults(model: str | None) -> dict[str, object]:
    """The value each option takes when left alone: what the engine resolves from its recipe defaults and
    the model's pipelines/ file (toolbox.engine.config.model_recipe), so the form never re-derives them."""
    if model and _family(model) == "rfdetr":
        return _rfdetr_option_defaults(model)
    values = dict(TRAIN_DEFAULTS)
    cfg = load_config(model) if model else {}
    recipe, _augment, info = model_recipe(cfg)
    values.update(recipe)
    out: dict[str, object] = {flag: values.get(key) for flag, key in DEFAULT_KEYS.items()}
    out["--lr"] = None  # blank: the engine's own rate (base rate, scaled as the config says)
    out["--input-size"] = info.get("input_size")
    out["--sampling"] = ((cfg.get("transformer") or {}).get("sampling") or cfg.get("sampling") or "grid")
    if not isinstance(out.get("--warmup-steps"), int):
        out["--warmup-steps"] = None  # "auto": blank, the engine derives it from the planned steps
    if out.get("--max-steps") is None:
        out["--max-steps"] = 0
    return out


def _family(model: str) -> str:
    from ..rfdetr.dispatch import family_of_model

    return family_of_model(model)  # an unknown name raises UsageError, as load_config does


def _rfdetr_option_defaults(model: str) -> dict[str, object]:
    """The same form defaults for an RF-DETR model: toolbox.rfdetr.config's defaults merged with the
    model file's recipe (rfdetr's TrainConfig values); RT-DETR-only fields stay blank / at their default."""
    from ..rfdetr import config as R
    from ..rfdetr.dispatch import model_config

    cfg = model_config(model)
    values = {**R.TRAIN_DEFAULTS, **R.recipe(cfg)}
    out: dict[str, object] = {flag: values.get(key) for flag, key in DEFAULT_KEYS.items()}
    out["--lr"] = None  # blank: the recipe's rate (the log says the rate in use)
    out["--warmup-steps"] = None  # rfdetr warms up in epochs (-o train.warmup_epochs=E)
    out["--input-size"] = cfg.get("input_size")
    out["--sampling"] = "grid"
    if out.get("--max-steps") is None:
        out["--max-steps"] = 0
    return out


# ---------------------------------------------------------------------- the command line
def build_args(dataset: str, model: str, run: str, device: str, pretrained: str, init_from: str,
               extra: str, values: dict[str, object], defaults: dict[str, object], *,
               guard: PathGuard) -> tuple[list[str], str]:
    """The `train` arguments for the form; returns (args, run name). Options left at their default are
    not passed, so the command says what the user chose and the config supplies the rest. Every field
    naming a file or folder (dataset, config, pretrained weights, init-from) must pass `guard`."""
    if not dataset:
        raise UsageError("pick a dataset (check one on the Data page first)")
    if not model:
        raise UsageError("pick a model")
    dataset = guard.check_name_or_path(dataset, "Dataset")
    if model.endswith((".yaml", ".yml")):
        model = checked_config(guard, model)
    pretrained = guard.check_file_or_url(pretrained, "Start from", keywords=("default", "none"))
    init_from = guard.check_name_or_path(init_from, "Init from")
    run = (run or "").strip() or f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}-{datetime.now():%Y%m%d-%H%M%S}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run) or run in (".", ".."):
        raise UsageError(f"run name '{run}' may only hold letters, digits, '.', '_' and '-'")
    model_flag = ["--config", model] if model.endswith((".yaml", ".yml")) else ["--model", model]
    args = ["--dataset", dataset, *model_flag, "--run", run, "--device", (device or "cpu").strip()]
    if pretrained and pretrained != "default":
        args += ["--pretrained", pretrained]
    if init_from and init_from.strip():
        args += ["--init-from", init_from.strip()]
    on_cpu = is_cpu(device)
    for flag, _label, kind, _help in OPTIONS:
        value = values.get(flag)
        if value is None or value == "":
            continue
        if flag == "--amp" and on_cpu:
            continue  # the engine refuses --amp without a GPU; the form greys the box out on the CPU
        if kind == "bool":
            if value:
                args.append(flag)
            continue
        value = form_number(flag, _label, kind, value)
        if value is None:
            continue
        if flag == "--max-steps" and not value:
            continue
        if _same(value, defaults.get(flag)):
            continue
        args += [flag, str(value)]
    for line in (extra or "").replace(";", "\n").splitlines():
        line = line.strip()
        if line:
            if "=" not in line:
                raise UsageError(f"override '{line}' is not KEY=VALUE (e.g. train.ema=false)")
            args += ["-o", line]
    return args, run


def is_cpu(device: str | None) -> bool:
    return (device or "cpu").strip().lower() == "cpu"


def amp_box(device: str | None):
    """The mixed-precision box for a device: usable on a GPU, unticked and greyed out on the CPU."""
    if is_cpu(device):
        return gr.update(interactive=False, value=False, info="GPU only: not available on the CPU")
    return gr.update(interactive=True, info=AMP_HELP)


def checked_config(guard: PathGuard, value: str) -> str:
    """A model config path: the repository's pipelines/ files, or a file under an allowed folder.

    A relative path is read from the repository root, as the job (run there) would read it.
    """
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        path = PIPELINES.parent / path
    path = path.resolve()
    if PIPELINES.resolve() in path.parents:
        return str(path)
    try:
        return str(guard.check(path))
    except UsageError as e:
        raise UsageError(f"Model config: {e}") from None


def form_number(flag: str, label: str, kind: str, value):
    """A number box's value as the int/float its option takes; None for a blank optional box; text kinds
    unchanged. A typed value that is no number (or a learning rate the CLI would refuse) is a UsageError
    naming the box."""
    if not kind.startswith(("int", "float")):
        return value
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{label}: '{value}' is not a number") from None
    if kind.startswith("int"):
        if number != int(number):
            raise UsageError(f"{label}: '{value}' is not a whole number")
        return int(number)
    if flag == "--lr":  # the CLI's own rule, so the form says it before a job is started
        try:
            positive_float(str(value))
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"{label}: {e} (blank: the recipe's rate)") from None
    return number


KEEP = object()  # refilled(): leave the box as it is


def refilled(flags: list[str], new: dict, old: dict | None, values) -> list:
    """What a model change writes into each option box, in `flags` order: the new model's default where
    the box still shows the default it was filled with (`old`), KEEP where the user changed it.

    Why: picking a model can take seconds to answer (the first RF-DETR pick imports rfdetr, a change
    event can be reported twice), and a refill that lands after the user typed used to overwrite their
    values. A value typed equal to the old default counts as untouched and takes the new default.
    """
    out = []
    for flag, value in zip(flags, values):
        edited = old is not None and not (_same(value, old.get(flag)) or (value in (None, "") and old.get(flag) is None))
        out.append(KEEP if edited else new.get(flag))
    return out


def _same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def resume_args(view: JobView) -> list[str]:
    """The followed job's own arguments, resuming from its run's last checkpoint."""
    args = [str(a) for a in view.row.get("args") or []]
    if args and args[0] == "train":
        args = args[1:]
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--resume":
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                skip = True
            continue
        if a == "--workspace":
            skip = True
            continue
        out.append(a)
    if "--run" not in out:
        raise UsageError("this job has no --run name to resume; start it again from the form")
    return [*out, "--resume"]


# ---------------------------------------------------------------------- page
def build(ctx: AppContext, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    gr.Markdown(intro("2 · Train a detector",
                      "Pick a model (bigger = more accurate, slower) and a checked dataset, then **Start**. "
                      "Defaults follow the published RT-DETR recipe; the options below are optional. "
                      "The job runs in the background: curves, progress and log update live, and you can "
                      "cancel it or resume it from its last checkpoint."))
    zoo = zoo_rows()
    names = [r["model"] for r in zoo]
    first_model = "RT-DETR-R18" if "RT-DETR-R18" in names else (names[0] if names else None)
    datasets = list_datasets(ctx.workspace)
    first_ds = ctx.settings.get("demo") if ctx.settings.get("demo") in datasets else (datasets[0] if datasets else None)
    with gr.Accordion("Model zoo (COCO val2017, published figures)", open=False):
        gr.Dataframe(pd.DataFrame(zoo), interactive=False, elem_id="train-zoo")
    with gr.Row():
        dataset = gr.Dropdown(datasets, value=first_ds, label="Dataset", elem_id="train-dataset",
                              info="a dataset checked on the Data page")
        model = gr.Dropdown(names, value=first_model, label="Model", allow_custom_value=True,
                            elem_id="train-model", info="from the zoo, or a pipelines/*.yaml path")
        run = gr.Textbox(label="Run name", placeholder="default: model-date-time", elem_id="train-run")
    with gr.Row():
        device = gr.Dropdown(["cpu", "gpu", "gpu:0", "gpu:0,1", "gpu:0,1,2,3"], value="cpu",
                             allow_custom_value=True, label="Device", elem_id="train-device",
                             info="gpu:0,1 trains on two GPUs (one job per device at a time; later ones queue)")
        pretrained = gr.Dropdown(["default", "none"], value="default", allow_custom_value=True,
                                 label="Start from", elem_id="train-pretrained",
                                 info="default: the model's official COCO weights (needs internet once); "
                                      "none: from scratch; or a .pdparams path/URL")
        init_from = gr.Textbox(label="Init from run (optional)", placeholder="a run name or weights path",
                               elem_id="train-init-from", info="weights only, e.g. to fine-tune an earlier run")
    defaults = option_defaults(first_model)
    widgets: dict[str, gr.components.Component] = {}
    with gr.Accordion("Training options", open=False):
        with gr.Row(equal_height=False):
            for i, (flag, label, kind, help_) in enumerate(OPTIONS):
                elem = f"train-opt-{flag[2:]}"
                value = defaults.get(flag)
                if kind == "bool":
                    on_cpu = flag == "--amp" and is_cpu(device.value)
                    widgets[flag] = gr.Checkbox(value=bool(value) and not on_cpu, label=label, elem_id=elem,
                                                info="GPU only: not available on the CPU" if on_cpu else help_,
                                                interactive=not on_cpu, min_width=200)
                elif kind.startswith("choice:"):
                    widgets[flag] = gr.Dropdown(kind.split(":", 1)[1].split("|"), value=value or "grid",
                                                label=label, info=help_, elem_id=elem, min_width=200)
                elif kind.endswith("?"):
                    # a text box: Gradio 6 shows a gr.Number holding None as 0 and sends 0 on Start, so a blank
                    # learning rate became --lr 0.0 and a blank (auto) warm-up --warmup-steps 0
                    widgets[flag] = gr.Textbox(value="" if value is None else str(value), label=label, info=help_,
                                               elem_id=elem, placeholder="blank: automatic", max_lines=1,
                                               min_width=200)
                else:
                    widgets[flag] = gr.Number(value=value, label=label, info=help_, elem_id=elem,
                                              precision=0 if kind == "int" else None, min_width=200)
        extra = gr.Textbox(label="Config overrides (-o KEY=VALUE, one a line)", lines=2,
                           placeholder="train.ema_decay=0.999", elem_id="train-overrides")
    flags = [f for f, *_ in OPTIONS]
    defaults_state = gr.State(defaults)  # the defaults the boxes were last filled with
    model_defaults = gr.State(None)  # the picked model's defaults, before they reach the boxes
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        resume = gr.Button("Resume the followed run", elem_id="train-resume")
    with gr.Group():
        plan = gr.Markdown(elem_id="train-plan")
        with gr.Row():
            propose = gr.Button("Use CPU-sized settings", elem_id="train-propose", visible=False)
            measure = gr.Button("Measure speed (short probe run)", elem_id="train-measure", size="sm")
    message = gr.Markdown(elem_id="train-message")
    gr.Markdown("### Progress")
    follower = Follower(ctx, ("train",), "train", label="Training job")
    summary = gr.Markdown(elem_id="train-summary")
    loss0, lr0, map0 = curves(None)  # typed from the start: the charts keep the first column types
    with gr.Row():
        loss_plot = gr.LinePlot(loss0, x="step", y="value", color="series", title="Loss", height=260,
                                elem_id="train-loss-plot", y_title="loss")
        lr_plot = gr.LinePlot(lr0, x="step", y="lr", title="Learning rate", height=260, elem_id="train-lr-plot",
                              y_title="learning rate")
        map_plot = gr.LinePlot(map0, x="step", y="value", color="series", title="Validation mAP", height=260,
                               elem_id="train-map-plot", y_title="AP (0-1)")
    plotted = gr.State(None)  # (job, number of events) the plots and summary show

    def on_model(m):
        try:
            return option_defaults(m)  # can take seconds: the first RF-DETR pick imports rfdetr
        except ToolboxError:  # a typed name or path that is no model (yet): Start says why
            return None

    def on_model_defaults(new, old, *vals):
        if new is None:
            return (gr.skip(), *[gr.skip()] * len(flags))
        filled = refilled(flags, new, old, vals)
        return (new, *[gr.skip() if v is KEEP else gr.update(value=v) for v in filled])

    def on_start(ds, m, r, dev, pre, init, ex, dflt, *vals):
        try:
            args, run_name = build_args(ds, m, r, dev, pre, init, ex, dict(zip(flags, vals)), dflt or {},
                                        guard=ctx.guard)
            job_id = ctx.jobs.submit("train", args, name=run_name, out_dir=ctx.workspace.runs / run_name)
        except ToolboxError as e:
            return (error_md(e), *follower.skips())
        status = ctx.jobs.registry.get(job_id)["status"]
        note = " It is **queued** until the running training job on this device ends." if status == "queued" else ""
        return (f"Started job #{job_id}: run **{html.escape(run_name)}**.{note}", *follower.select(job_id))

    def on_resume(job_id):
        try:
            view = follower.view(job_id)
            if view is None:
                raise UsageError("no training job to resume: start one first")
            if view.status in ACTIVE:
                raise UsageError(f"job #{view.id} is still {view.status}; cancel it before resuming")
            args = resume_args(view)
            name = view.row.get("name") or ""
            new_id = ctx.jobs.submit("train", args, name=name, out_dir=view.row.get("out_dir") or "")
        except ToolboxError as e:
            return (error_md(e), *follower.skips())
        return (f"Resuming **{html.escape(name)}** from its last checkpoint as job #{new_id}.",
                *follower.select(new_id))

    def refresh(job_id, known, shown, on_plots):
        out, view, _changed = follower.tick(job_id, known, shown)
        stamp = None if view is None else [view.id, view.status, len(view.events)]
        plots = PlotsShown.of(on_plots)
        if stamp == plots.stamp:
            return (*out, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())  # nothing new: no redraw
        loss, lr, mp = curves(view)
        now = PlotsShown(stamp, {"loss": series_of(loss), "map": series_of(mp)}, dict(plots.legend))
        return (*out, run_summary(view), loss, lr, mp, now)

    def name_legends(on_plots):
        """After new data: name the series of a plot whose series changed (see PlotsShown)."""
        plots = PlotsShown.of(on_plots)
        ups = [plots.legend_update(k) for k in ("loss", "map")]
        return (*ups, plots)

    def form_options(dev, dflt, vals) -> dict:
        """The form as engine options (None: left at the default), as build_args passes them."""
        out = {}
        for (flag, _l, kind, _h), v in zip(OPTIONS, vals):
            key = DEFAULT_KEYS.get(flag) or flag[2:].replace("-", "_")
            if v in (None, "") or _same(v, (dflt or {}).get(flag)) or (flag == "--max-steps" and not v):
                out[key] = None
            elif flag == "--amp":
                out[key] = bool(v) and not is_cpu(dev) or None
            else:
                out[key] = form_number(flag, _l, kind, v)
        out["device"] = (dev or "cpu").strip()
        return out

    def on_plan(ds, m, dev, ex, dflt, *vals):
        if not ds or not m:
            return "Pick a dataset and a model to see the plan.", gr.update(visible=False)
        try:
            speed = P.measured_speed(ctx.workspace, m, (dev or "cpu").strip())
            text = P.plan_md(ctx.workspace, ds, m, dev, form_options(dev, dflt, vals), parse_overrides(ex), speed)
            if is_cpu(dev):
                _names, n_train = P.dataset_facts(ctx.workspace, ds)
                size = int((dflt or {}).get("--input-size") or 640)
                if speed is None:
                    text += ("\n\n**On the CPU** the recipe's defaults take far too long: measure the speed "
                             "first, and a CPU-sized proposal appears here.")
                    return text, gr.update(visible=False)
                prop = P.cpu_proposal(n_train, speed, size, model=m)
                text += (f"\n\n**CPU-sized proposal:** input {prop['--input-size']} px, {prop['--epochs']} "
                         f"epochs of batch {prop['--batch-size']}, evaluated every {prop['--eval-interval']} "
                         f"epoch(s): about {fmt_duration(P.CPU_BUDGET_S)} or less of training here.")
                return text, gr.update(visible=True, value=f"Use CPU-sized settings ({prop['--epochs']} epochs "
                                                         f"at {prop['--input-size']} px)")
            return text, gr.update(visible=False)
        except ToolboxError as e:
            return error_md(e), gr.update(visible=False)

    def on_propose(ds, m, dev, dflt):
        speed = P.measured_speed(ctx.workspace, m, (dev or "cpu").strip())
        if speed is None or not ds:
            return [gr.skip()] * len(flags)
        _names, n_train = P.dataset_facts(ctx.workspace, ds)
        prop = P.cpu_proposal(n_train, speed, int((dflt or {}).get("--input-size") or 640), model=m)
        return [gr.update(value=prop[f]) if f in prop else gr.skip() for f in flags]

    def on_measure(ds, m, dev):
        try:
            size = P.cpu_size(m, int(option_defaults(m).get("--input-size") or 640)) if is_cpu(dev) else None
            name = f"{P.probe_run_name(m, size or 0)}-{datetime.now():%Y%m%d-%H%M%S}"
            values = {"--max-steps": P.PROBE_STEPS, "--log-interval": 1, "--batch-size": 4, "--epochs": 1,
                      "--input-size": size}
            args, run_name = build_args(ds, m, name, dev, "none", "", "", values, {}, guard=ctx.guard)
            job_id = ctx.jobs.submit("train", args, name=run_name, out_dir=ctx.workspace.runs / run_name)
        except ToolboxError as e:
            return (error_md(e), *follower.skips())
        return (f"Measuring: probe job #{job_id} trains {P.PROBE_STEPS} steps from scratch; the plan shows "
                "the time once it has logged them.", *follower.select(job_id))

    plan_inputs = [dataset, model, device, extra, defaults_state, *widgets.values()]
    gr.on([dataset.change, model.change, device.change, extra.change, *[w.change for w in widgets.values()],
           demo.load, follower.signal.change], on_plan, plan_inputs, [plan, propose], api_visibility="private",
          show_progress="hidden")
    propose.click(on_propose, [dataset, model, device, defaults_state], list(widgets.values()),
                  api_visibility="private")
    measure.click(on_measure, [dataset, model, device], [message, *follower.outputs()], api_visibility="private")
    # two steps, so that the boxes are read after the (slow) defaults are known, not when the model was
    # picked: whatever was typed meanwhile is then seen, and kept (refilled)
    model.change(on_model, [model], [model_defaults], api_visibility="private", show_progress="hidden").then(
        on_model_defaults, [model_defaults, defaults_state, *widgets.values()], [defaults_state, *widgets.values()],
        api_visibility="private", show_progress="hidden")
    device.change(amp_box, [device], [widgets["--amp"]], api_visibility="private")
    start.click(on_start, [dataset, model, run, device, pretrained, init_from, extra, defaults_state,
                           *widgets.values()], [message, *follower.outputs()], api_visibility="private")
    resume.click(on_resume, [follower.job], [message, *follower.outputs()], api_visibility="private")
    live = [*follower.outputs(), summary, loss_plot, lr_plot, map_plot, plotted]
    legends = dict(fn=name_legends, inputs=[plotted], outputs=[loss_plot, map_plot, plotted],
                   api_visibility="private", show_progress="hidden")
    follower.watch(refresh, [*follower.inputs(), plotted], live).then(**legends)
    follower.job.change(refresh, [*follower.inputs(), plotted], live, api_visibility="private",
                        show_progress="hidden").then(**legends)
    def refresh_datasets(current):
        names = list_datasets(ctx.workspace)
        return gr.update(choices=names, value=current if current in names else (names[0] if names else None))

    demo.load(refresh_datasets, [dataset], [dataset], api_visibility="private")
    tab.select(refresh_datasets, [dataset], [dataset], api_visibility="private")
    return [follower.timer]


# ---------------------------------------------------------------------- API endpoints
def api(ctx: AppContext) -> None:
    def train(dataset: str, model: str = "RT-DETR-R18", run: str = "", device: str = "cpu",
              pretrained: str = "default", options: dict | None = None) -> dict:
        """Start a training job (`python -m toolbox train`); options maps CLI flags to values,
        e.g. {"--epochs": 10, "--max-steps": 50}. Returns {"job", "run", "status"}; follow it with /job."""
        values = {k if k.startswith("--") else "--" + k.replace("_", "-"): v for k, v in (options or {}).items()}
        args, run_name = build_args(dataset, model, run, device, pretrained, "", "", values, {}, guard=ctx.guard)
        job_id = ctx.jobs.submit("train", args, name=run_name, out_dir=ctx.workspace.runs / run_name)
        return {"job": job_id, "run": run_name, "status": ctx.jobs.registry.get(job_id)["status"]}

    gr.api(api_errors(train), api_name="train")
