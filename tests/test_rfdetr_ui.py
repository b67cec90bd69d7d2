"""The Train page with RF-DETR models (no browser): the picker lists them, the form's defaults and the plan
come from toolbox.rfdetr.config's resolution (no crash on an RF-DETR file), CPU sizes respect each size's
multiple, and the command line a form builds trains through the same `train` command."""
from __future__ import annotations

import pytest


pytestmark = pytest.mark.usefixtures("needs_rfdetr")
RF_MODELS = ["RF-DETR-N", "RF-DETR-S", "RF-DETR-M", "RF-DETR-B", "RF-DETR-L"]


def test_picker_lists_rfdetr_and_defaults_come_from_its_recipe():
    from toolbox.models.config import PIPELINES_DIR, read_yaml
    from toolbox.rfdetr import config as R
    from toolbox.ui.train import model_names, option_defaults

    names = model_names()
    assert set(RF_MODELS) <= set(names) and "RT-DETR-R18" in names
    for name in RF_MODELS:
        cfg = read_yaml(PIPELINES_DIR / f"{name}.yaml")
        d = option_defaults(name)
        recipe = R.recipe(cfg)
        assert d["--epochs"] == recipe["epochs"] and d["--batch-size"] == recipe["batch_size"]
        assert d["--grad-accum-steps"] == recipe["grad_accum_steps"]
        assert d["--batch-size"] * d["--grad-accum-steps"] == 16  # rfdetr's recommended effective batch
        assert d["--input-size"] == cfg["input_size"] and d["--warmup-steps"] is None and d["--max-steps"] == 0


def test_cpu_sizes_are_multiples_of_each_rfdetr_size():
    from toolbox.ui import plan as P

    assert P.cpu_size("RF-DETR-N", 384) == 320      # multiple 32: the CPU cap itself
    assert P.cpu_size("RF-DETR-B", 560) == 280      # multiple 56: the largest multiple under 320
    assert P.cpu_size("RT-DETR-R18", 640) == 320
    speed = P.Speed(images_per_s=2.0, input_size=280, run="r")
    assert P.cpu_proposal(100, speed, 560, model="RF-DETR-B")["--input-size"] == 280


def test_plan_of_an_rfdetr_model(session_workspace, tiny_dataset):
    from toolbox.ui import plan as P

    names, n_train = P.dataset_facts(session_workspace, tiny_dataset)
    opts = {"epochs": 3, "batch_size": 2, "grad_accum_steps": 2, "sampling": None, "warmup_steps": None}
    md = P.plan_md(session_workspace, tiny_dataset, "RF-DETR-N", "cpu", opts, {}, None)
    steps = 3 * -(-n_train // 2 // 2)
    assert f"**{steps} steps** of 4 images at 384 px" in md and "rfdetr's" in md and "encoder 0.00015" in md
    assert "not measured" in md
    from toolbox.errors import UsageError

    with pytest.raises(UsageError, match="multiple of 32"):
        P.plan_md(session_workspace, tiny_dataset, "RF-DETR-N", "cpu", {"input_size": 100}, {}, None)


def test_form_command_line_for_rfdetr(tmp_path):
    from toolbox.ui.safety import PathGuard
    from toolbox.ui.train import build_args, option_defaults

    defaults = option_defaults("RF-DETR-N")
    values = {**defaults, "--epochs": 5, "--input-size": 320}
    args, run = build_args("demo", "RF-DETR-N", "", "cpu", "none", "", "", values, defaults,
                           guard=PathGuard([tmp_path]))
    assert args[:4] == ["--dataset", "demo", "--model", "RF-DETR-N"] and run.startswith("RF-DETR-N-")
    assert args[args.index("--epochs") + 1] == "5" and args[args.index("--input-size") + 1] == "320"
    assert "--sampling" not in args and "--warmup-steps" not in args and "--batch-size" not in args


def test_model_change_keeps_what_the_user_typed():
    """Switching the picker from RT-DETR-R18 to RF-DETR-N refills the boxes still showing R18's defaults
    with RF-DETR's (its gradient accumulation 4) and keeps the ones the user changed, also when the same
    pick is reported twice (the refill then changes nothing)."""
    from toolbox.ui.train import KEEP, OPTIONS, option_defaults, refilled

    flags = [f for f, *_ in OPTIONS]
    r18, rf = option_defaults("RT-DETR-R18"), option_defaults("RF-DETR-N")
    assert r18["--grad-accum-steps"] != rf["--grad-accum-steps"] == 4
    typed = {"--epochs": 1, "--max-steps": 3, "--lr": 0.0005}
    assert all(r18[f] != v for f, v in typed.items())  # else they would count as untouched
    boxes = [typed.get(f, r18.get(f)) for f in flags]
    filled = dict(zip(flags, refilled(flags, rf, r18, boxes)))
    assert {f for f, v in filled.items() if v is KEEP} == set(typed)
    assert filled["--grad-accum-steps"] == 4 and filled["--input-size"] == rf["--input-size"]
    now = [typed[f] if f in typed else filled[f] for f in flags]  # the form after that refill
    again = refilled(flags, rf, rf, now)  # the same pick, reported a second time
    assert [n if a is KEEP else a for n, a in zip(now, again)] == now


def test_predict_page_loads_an_rfdetr_run(session_workspace, tiny_dataset, rfdetr_run):
    """The Predict page's source for an RF-DETR run is its best model.pth, predicted through toolbox.rfdetr,
    the second call reusing the loaded model."""
    from toolbox.ui.predictors import PredictorCache, find_source, predict_one

    from toolbox.ui.widgets import list_runs

    ws = session_workspace
    assert rfdetr_run.name in list_runs(ws, with_checkpoint=True)  # the Evaluate/Export/Predict pickers
    src = find_source(ws, "run", rfdetr_run.name)
    assert src.weights == rfdetr_run / "checkpoints" / "best" / "model.pth"
    image = sorted((ws.datasets / tiny_dataset).rglob("val_*.jpg"))[0]
    cache = PredictorCache()
    first, reused1, _ = predict_one(ws, cache, src, image, 0.0)
    second, reused2, _ = predict_one(ws, cache, src, image, 0.0)
    assert (reused1, reused2) == (False, True) and len(first["boxes"]) == 300 and first["boxes"] == second["boxes"]


def test_live_curves_of_an_rfdetr_run(rfdetr_run):
    """The Train page's curves read an RF-DETR run's events unchanged: total loss and the main terms, lr,
    AP/AP50 at the evaluation."""
    from types import SimpleNamespace

    from toolbox.events import read_events
    from toolbox.ui.curves import curves, series_of

    view = SimpleNamespace(events=list(read_events(rfdetr_run / "events.jsonl")))  # what a JobView holds
    loss, lr, ap = curves(view)
    assert series_of(loss) == ["loss", "loss_bbox", "loss_ce", "loss_giou"]
    assert len(lr) == 3 and series_of(ap) == ["AP", "AP50"]


def test_export_page_offers_an_rfdetr_run_its_own_formats(session_workspace, rfdetr_run):
    """The Export page ticks what the picked run's family exports: ONNX (and offers RKNN) for an RF-DETR run,
    never the Paddle format its export would refuse; an RT-DETR run (or none) keeps Paddle + ONNX."""
    from toolbox.ui.export import formats_for_run

    choices, ticked = formats_for_run(session_workspace, rfdetr_run.name)
    assert [v for _, v in choices] == ["onnx", "rknn"] and ticked == ["onnx"]
    choices, ticked = formats_for_run(session_workspace, None)
    assert [v for _, v in choices] == ["paddle", "onnx", "onnx-int8", "rknn"] and ticked == ["paddle", "onnx"]
