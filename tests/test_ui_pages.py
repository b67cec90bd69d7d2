"""Fast checks of the web UI's pages without a browser: the command lines they build, the tables they
show from the contract's files, and the whole Blocks app building on an empty workspace."""
from __future__ import annotations

import pytest

from toolbox.errors import UsageError
from toolbox.ui.jobs import JobView


def _guard(tmp_path):
    from toolbox.ui.safety import PathGuard

    return PathGuard([tmp_path])


def test_train_command_line_only_passes_what_changed(tmp_path):
    from toolbox.ui.train import PIPELINES, build_args

    guard = _guard(tmp_path)

    defaults = {"--epochs": 72, "--batch-size": 4, "--max-steps": 0}
    args, run = build_args("demo", "RT-DETR-R18", "", "gpu:0,1", "none", "", "train.ema=false",
                           {"--epochs": 72, "--batch-size": 8, "--max-steps": 0, "--lr": None, "--amp": True},
                           defaults, guard=guard)
    assert run.startswith("RT-DETR-R18-")
    assert args[:8] == ["--dataset", "demo", "--model", "RT-DETR-R18", "--run", run, "--device", "gpu:0,1"]
    assert "--epochs" not in args and "--max-steps" not in args and "--lr" not in args
    assert args[args.index("--batch-size") + 1] == "8"
    assert "--amp" in args and args[args.index("--pretrained") + 1] == "none"
    assert args[-2:] == ["-o", "train.ema=false"]
    args, _ = build_args("demo", "pipelines/tiny-test.yaml", "r", "cpu", "default", "", "", {}, {}, guard=guard)
    assert args[2:4] == ["--config", str(PIPELINES / "tiny-test.yaml")] and "--pretrained" not in args
    for bad in [("", "m", "r"), ("d", "", "r"), ("d", "m", "../x")]:
        with pytest.raises(UsageError):
            build_args(*bad, "cpu", "default", "", "", {}, {}, guard=guard)
    with pytest.raises(UsageError, match="KEY=VALUE"):
        build_args("d", "m", "r", "cpu", "default", "", "oops", {}, {}, guard=guard)
    # the blank-able boxes (learning rate, warm-up) are text: blank passes nothing, a typed value its number
    args, _ = build_args("demo", "RT-DETR-R18", "r", "cpu", "none", "", "", {"--lr": " ", "--warmup-steps": ""},
                         defaults, guard=guard)
    assert "--lr" not in args and "--warmup-steps" not in args
    args, _ = build_args("demo", "RT-DETR-R18", "r", "cpu", "none", "", "", {"--lr": "2e-4", "--warmup-steps": "0"},
                         defaults, guard=guard)
    assert args[args.index("--lr") + 1] == "0.0002" and args[args.index("--warmup-steps") + 1] == "0"
    for values, match in [({"--lr": "0"}, "Learning rate: must be above 0"), ({"--lr": "fast"}, "'fast' is not a number"),
                          ({"--warmup-steps": "1.5"}, "Warm-up steps: '1.5' is not a whole number")]:
        with pytest.raises(UsageError, match=match):
            build_args("demo", "RT-DETR-R18", "r", "cpu", "none", "", "", values, defaults, guard=guard)


def test_resume_reuses_the_jobs_arguments():
    from toolbox.ui.train import resume_args

    view = JobView({"id": 3, "args": ["train", "--dataset", "d", "--run", "r", "--resume", "ck/last", "--epochs", "2"]}, [])
    assert resume_args(view) == ["--dataset", "d", "--run", "r", "--epochs", "2", "--resume"]
    with pytest.raises(UsageError):
        resume_args(JobView({"id": 4, "args": ["train", "--dataset", "d"]}, []))


def test_curves_and_progress_from_events():
    from toolbox.ui.runs import progress_of
    from toolbox.ui.curves import curves

    events = [{"type": "start", "total_steps": 10},
              {"type": "log", "step": 5, "total_steps": 10, "epoch": 1, "eta_s": 65, "lr": 1e-4,
               "images_per_s": 3.2, "losses": {"loss": 9.0, "loss_class": 1.0, "loss_class_aux": 2.0, "loss_bbox_dn": 1.0}},
              {"type": "eval", "step": 5, "metrics": {"AP": 0.25, "AP50": 0.5}}]
    view = JobView({"id": 1, "status": "running"}, events)
    loss, lr, mp = curves(view)
    assert set(loss["series"]) == {"loss", "loss_class"}
    assert lr["lr"].tolist() == [1e-4] and mp["value"].tolist() == [0.25, 0.5]
    # numeric columns even before the first log: the chart keeps the types of the first table it gets
    for table in (*curves(None), loss, lr, mp):
        assert str(table["step"].dtype) == "int64"
        assert all(str(table[c].dtype) == "float64" for c in ("value", "lr") if c in table)
    frac, caption = progress_of(view)
    assert frac == 0.5 and "step 5/10" in caption and "ETA 1m 05s" in caption
    assert progress_of(JobView({"id": 2, "status": "queued"}, []))[1].startswith("queued")
    assert progress_of(JobView({"id": 2, "status": "ok"}, events))[0] == 1.0


def test_export_and_deploy_command_lines(tmp_path):
    from toolbox.ui.export import deploy_args, export_args

    guard = _guard(tmp_path)
    args, name = export_args("r1", "best", "", ["rknn", "onnx"], 320, True, "int8", 16, guard=guard)
    assert name == "r1"
    assert args == ["--run", "r1", "--weights", "best", "--name", "r1", "--formats", "onnx,rknn",
                    "--input-size", "320", "--fp16-onnx", "--rknn-quant", "int8", "--calib-size", "16"]
    # INT8 ONNX for CPUs: its own calibration default (200), the RKNN slider does not apply
    args, _ = export_args("r1", "best", "", ["onnx-int8", "paddle"], None, False, "fp16", 32, guard=guard)
    assert args == ["--run", "r1", "--weights", "best", "--name", "r1", "--formats", "paddle,onnx-int8"]
    # its own options: calibration count and the AP limit (points on the form, COCOeval's 0-1 on the CLI)
    args, _ = export_args("r1", "best", "", ["onnx-int8"], None, False, "fp16", 32, guard=guard,
                          int8_calib_size=50, int8_max_ap_drop_points=0.5)
    assert args[-4:] == ["--calib-size", "50", "--int8-max-ap-drop", "0.005"]
    args, _ = export_args("r1", "best", "", ["onnx-int8", "rknn"], None, False, "int8", 32, guard=guard,
                          int8_calib_size=32)
    assert args.count("--calib-size") == 1 and "--int8-max-ap-drop" not in args
    with pytest.raises(UsageError, match="one calibration count"):   # the CLI takes one count for both
        export_args("r1", "best", "", ["onnx-int8", "rknn"], None, False, "int8", 32, guard=guard,
                    int8_calib_size=200)
    with pytest.raises(UsageError, match="AP points"):
        export_args("r1", "best", "", ["onnx-int8"], None, False, "fp16", 32, guard=guard,
                    int8_max_ap_drop_points=-1)
    with pytest.raises(UsageError):
        export_args("r1", "best", "a/b", ["onnx"], None, False, "fp16", 32, guard=guard)
    with pytest.raises(UsageError):
        export_args("r1", "best", "", [], None, False, "fp16", 32, guard=guard)
    assert deploy_args("e", ["linux-cpu-python", "rk3588-cpp"], guard=guard) == [
        "--export", "e", "--target", "linux-cpu-python,rk3588-cpp"]
    with pytest.raises(UsageError):
        deploy_args("e", [], guard=guard)


def test_data_report_tables():
    from toolbox.ui.data import classes_table, counts_table, problems_table, summary_md

    report = {"check_pass": False, "source_format": "voc",
              "attributes": {"num_classes": 2, "class_names": ["a", "b"], "train_samples": 5, "val_samples": 2},
              "analysis": {"box_sizes": {"small": 1, "medium": 2, "large": 3}, "images_without_boxes": 0,
                           "boxes_per_class": {"train": {"a": 3, "b": 4}, "val": {"a": 1}}},
              "errors": [{"code": "bbox_degenerate", "file": "x.xml", "annotation_id": 7, "problem": "zero width"}],
              "warnings": []}
    counts = dict(counts_table(report).values.tolist())
    assert counts["train images"] == 5 and counts["errors"] == 1
    assert classes_table(report).to_dict("records") == [{"class": "a", "train": 3, "val": 1},
                                                        {"class": "b", "train": 4, "val": 0}]
    assert problems_table(report).iloc[0].tolist() == ["error", "x.xml", "7", "zero width"]
    md = summary_md("cells", report)
    assert "check failed" in md and "voc" in md


def test_app_builds_on_an_empty_workspace(workspace):
    from toolbox.ui.app import build_app, make_context

    ctx = make_context(workspace)
    demo = build_app(ctx)
    config = demo.get_config_file()
    api_names = {d.get("api_name") for d in config["dependencies"] if d.get("api_visibility", "public") == "public"}
    assert {"check", "convert", "split", "train", "eval", "export", "deploy", "predict", "jobs", "job",
            "cancel"} <= api_names


def test_form_defaults_come_from_the_engine_and_models():
    """The Train form's defaults are the engine's recipe merged with the model file (no re-derivation,
    no fallback): a model the project cannot load is an error, not an empty form."""
    from toolbox.engine.config import TRAIN_DEFAULTS, model_recipe
    from toolbox.models import list_models, load_config
    from toolbox.ui.train import option_defaults, zoo_rows

    assert [r["model"] for r in zoo_rows()] == [m["name"] for m in list_models()]
    recipe, _, info = model_recipe(load_config("RT-DETR-R18"))
    d = option_defaults("RT-DETR-R18")
    assert d["--epochs"] == recipe.get("epochs", TRAIN_DEFAULTS["epochs"])
    warmup = recipe.get("warmup_steps", TRAIN_DEFAULTS["warmup_steps"])
    # a number field shows a fixed warm-up; the engine's "auto" (derived from the planned steps) is blank
    assert d["--warmup-steps"] == (warmup if isinstance(warmup, int) else None)
    assert d["--input-size"] == info["input_size"]
    with pytest.raises(UsageError):
        option_defaults("no-such-model")


def test_mixed_precision_only_on_a_gpu(tmp_path):
    """The engine refuses --amp without a GPU, so the form never sends it for the CPU and greys the box out."""
    from toolbox.ui.train import amp_box, build_args

    guard = _guard(tmp_path)
    cpu, _ = build_args("d", "RT-DETR-R18", "r", "cpu", "none", "", "", {"--amp": True}, {}, guard=guard)
    gpu, _ = build_args("d", "RT-DETR-R18", "r", "gpu:0", "none", "", "", {"--amp": True}, {}, guard=guard)
    assert "--amp" not in cpu and "--amp" in gpu
    assert amp_box("cpu")["interactive"] is False and amp_box("cpu")["value"] is False
    assert amp_box("gpu:0,1")["interactive"] is True


def test_plan_shows_the_engines_schedule_and_a_measured_time(session_workspace, tiny_dataset, tiny_run):
    """The plan reads the engine's resolution of the form and the speed a run of the same model logged;
    the CPU proposal fits its time budget at that speed."""
    from toolbox.engine.config import load
    from toolbox.ui import plan as P

    ws = session_workspace
    speed = P.measured_speed(ws, "tiny-test", "cpu")
    assert speed is not None and speed.images_per_s > 0 and speed.input_size == load(tiny_run / "config.yaml")["model"]["input_size"]
    assert P.measured_speed(ws, "RT-DETR-R101", "cpu") is None  # a model no test trains: no figure borrowed
    names, n_train = P.dataset_facts(ws, tiny_dataset)
    cfg = P.resolved("tiny-test", names, {"epochs": 3, "batch_size": 2}, {})
    md = P.plan_md(ws, tiny_dataset, "tiny-test", "cpu", {"epochs": 3, "batch_size": 2}, {}, speed)
    steps = P.planned_steps(n_train, cfg)
    assert steps == 3 * -(-n_train // 2)
    assert f"**{steps} steps**" in md and f"learning rate {cfg['train']['lr']:.3g}" in md and "about" in md
    warmup = min(max(1, round(0.05 * steps)), 2000)  # the engine's rule: 5 % of the planned steps in [1, 2000]
    assert f"warm-up {warmup} steps from" in md, md
    assert "not measured" in P.plan_md(ws, tiny_dataset, "tiny-test", "cpu", {}, {}, None)
    prop = P.cpu_proposal(120, speed, 640)
    assert prop["--input-size"] == 320
    spent = prop["--epochs"] * 120 * speed.seconds_per_image(320)
    assert spent <= P.CPU_BUDGET_S and (prop["--epochs"] == 1 or spent + 120 * speed.seconds_per_image(320) > P.CPU_BUDGET_S)
