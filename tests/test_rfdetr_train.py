"""RF-DETR training through the toolbox (toolbox.rfdetr.train): the run folder, events and checkpoints an
RT-DETR run has, resume, cancel. The shared run is tests/rfdetr_support.py's `rfdetr_run` (RF-DETR-N
from scratch, 64 px, 3 steps); nothing downloads (the hub switches are set by tests/conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rfdetr_support import RF_SIZE, RF_STEPS

pytestmark = pytest.mark.usefixtures("needs_rfdetr")

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def events(run_dir: Path) -> list[dict]:
    from toolbox.events import read_events

    return list(read_events(run_dir / "events.jsonl"))


def test_run_folder_and_events_schema(rfdetr_run):
    import yaml

    cfg = yaml.safe_load((rfdetr_run / "config.yaml").read_text())
    assert cfg["model"]["backend"] == "rfdetr" and cfg["model"]["name"] == "RF-DETR-N"
    from toolbox.data.loader import dataset_labels

    cat_ids, names = dataset_labels(cfg["data"]["dir"])
    assert cfg["model"]["input_size"] == RF_SIZE and cfg["model"]["label_list"] == names and len(names) == 3
    assert (rfdetr_run / "train.log").read_text().strip()
    ev = events(rfdetr_run)
    assert all(e["schema_version"] == 1 and "time" in e for e in ev)
    kinds = [e["type"] for e in ev]
    assert kinds[0] == "start" and kinds[-1] == "end" and {"log", "eval", "checkpoint"} <= set(kinds)
    start = ev[0]
    assert start["total_steps"] == RF_STEPS and start["model"] == "RF-DETR-N"
    logs = [e for e in ev if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, RF_STEPS + 1))  # --log-interval 1
    for e in logs:
        assert set(e) >= {"epoch", "step", "total_steps", "losses", "lr", "images_per_s", "eta_s"}
        assert e["losses"]["loss"] > 0 and e["lr"] == pytest.approx(1e-4) and e["images_per_s"] > 0
        # rfdetr's own loss terms of the last decoder layer, with its aux (_0..) and encoder (_enc) ones
        assert {"loss_ce", "loss_bbox", "loss_giou", "loss_ce_enc"} <= set(e["losses"])
    (ev_eval,) = [e for e in ev if e["type"] == "eval"]
    assert list(ev_eval["metrics"]) == METRICS and ev_eval["step"] == RF_STEPS
    assert [c["class_id"] for c in ev_eval["per_class"]] == [0, 1, 2]
    assert [c["name"] for c in ev_eval["per_class"]] == names
    which = sorted(e["which"] for e in ev if e["type"] == "checkpoint")
    assert which == ["best", "last"]
    end = ev[-1]
    assert end["status"] == "ok" and end["exit_code"] == 0 and end["step"] == RF_STEPS


def test_checkpoints_load_strictly_and_last_resumes_lightning(rfdetr_run):
    import torch

    from toolbox.models.config import PIPELINES_DIR, read_yaml
    from toolbox.rfdetr.model import load_checkpoint, read_checkpoint

    cfg = read_yaml(PIPELINES_DIR / "RF-DETR-N.yaml")
    last = read_checkpoint(rfdetr_run / "checkpoints" / "last" / "model.pth")
    best = read_checkpoint(rfdetr_run / "checkpoints" / "best" / "model.pth")
    # last: Lightning's full checkpoint (what --resume needs) + the weights to use under `model`
    assert {"optimizer_states", "lr_schedulers", "loops", "callbacks", "state_dict", "model"} <= set(last)
    assert last["global_step"] == RF_STEPS
    # best: rfdetr's light layout: weights and the model description its own readers use
    assert {"model", "args", "model_name"} <= set(best) and best["model_name"] == "RFDETRNano"
    # the EMA weights (`model`) differ from the raw weights Lightning trains on (EMA is on by default)
    raw = {k[len("model."):]: v for k, v in last["state_dict"].items() if k.startswith("model.")}
    diff = max(float((raw[k].float() - v.float()).abs().max()) for k, v in last["model"].items()
               if v.is_floating_point())
    assert diff > 0
    for which in ("best", "last"):
        w = load_checkpoint(cfg, 3, rfdetr_run / "checkpoints" / which / "model.pth", input_size=RF_SIZE)
        assert w.model.model is not None
    info = json.loads((rfdetr_run / "checkpoints" / "best" / "checkpoint.json").read_text())
    assert info["step"] == RF_STEPS and info["backend"] == "rfdetr"
    assert torch.equal(best["model"]["class_embed.bias"], last["model"]["class_embed.bias"])  # same step, both EMA


def _train_small(workspace, dataset, run, steps, **extra):
    import toolbox

    return toolbox.train(dataset=dataset, model="RF-DETR-N", run=run, max_steps=steps, batch_size=2,
                         grad_accum_steps=1, log_interval=1, input_size=RF_SIZE, pretrained="none", num_workers=0,
                         overrides=["train.multi_scale=false"], workspace=workspace, progress=False, **extra)


@pytest.mark.slow
def test_resume_continues_the_run(session_workspace, tiny_dataset):
    """--resume continues from the last checkpoint's step (Lightning's optimizer, schedule, EMA and loop
    state), with a higher --max-steps; the steps already done are not repeated."""
    import toolbox
    from toolbox.rfdetr.model import read_checkpoint

    run_dir = _train_small(session_workspace, tiny_dataset, "rfdetr-resume", 1, eval_interval=1)
    first = read_checkpoint(run_dir / "checkpoints" / "last" / "model.pth")
    assert first["global_step"] == 1
    toolbox.train(run="rfdetr-resume", resume=True, max_steps=2, workspace=session_workspace, progress=False)
    ev = events(run_dir)
    starts = [i for i, e in enumerate(ev) if e["type"] == "start"]
    assert len(starts) == 2
    second = ev[starts[1]:]
    assert second[0]["resumed"] is True and second[0]["total_steps"] == 2
    assert [e["step"] for e in second if e["type"] == "log"] == [2]
    assert second[-1]["type"] == "end" and second[-1]["status"] == "ok" and second[-1]["step"] == 2
    last = read_checkpoint(run_dir / "checkpoints" / "last" / "model.pth")
    assert last["global_step"] == 2
    # the optimizer state came back and moved on: AdamW's step count per parameter is 2, not 1
    states = last["optimizer_states"][0]["state"]
    assert {int(float(s["step"])) for s in states.values()} == {2}
    # resuming a run that already reached its length does nothing, and says so with an ok end at step 2
    n = len(events(run_dir))
    toolbox.train(run="rfdetr-resume", resume=True, workspace=session_workspace, progress=False)
    extra = events(run_dir)[n:]
    assert [e["type"] for e in extra] == ["end"] and extra[0]["status"] == "ok" and extra[0]["step"] == 2
    assert "nothing to do" in (run_dir / "train.log").read_text()


def test_bad_input_size_is_a_usage_error(session_workspace, tiny_dataset):
    from toolbox.errors import UsageError

    import toolbox

    with pytest.raises(UsageError, match="multiple of 32"):
        toolbox.train(dataset=tiny_dataset, model="RF-DETR-N", run="rfdetr-bad-size", input_size=100,
                      pretrained="none", workspace=session_workspace, progress=False)
    assert not (session_workspace.runs / "rfdetr-bad-size").exists()  # refused before anything was written
    with pytest.raises(UsageError, match="one device"):
        toolbox.train(dataset=tiny_dataset, model="RF-DETR-N", run="rfdetr-bad-dev", device="gpu:0,1",
                      pretrained="none", workspace=session_workspace, progress=False)
    assert not (session_workspace.runs / "rfdetr-bad-dev").exists()
    with pytest.raises(UsageError, match="not an RF-DETR option"):
        toolbox.train(dataset=tiny_dataset, model="RF-DETR-N", run="rfdetr-bad-opt", sampling="discrete",
                      pretrained="none", workspace=session_workspace, progress=False)


@pytest.mark.slow
def test_cancel_exits_130_with_a_cancelled_end(session_workspace, tiny_dataset):
    """SIGTERM (the UI's cancel) during training: exit 130, end event cancelled, the job registry says so."""
    from toolbox.workspace import JobRegistry

    run_dir = session_workspace.runs / "rfdetr-cancel"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "toolbox", "--workspace", str(session_workspace.root), "train",
           "--dataset", tiny_dataset, "--model", "RF-DETR-N", "--run", "rfdetr-cancel", "--pretrained", "none",
           "--input-size", str(RF_SIZE), "--batch-size", "2", "--grad-accum-steps", "1", "--epochs", "50",
           "--log-interval", "1", "--num-workers", "0", "-o", "train.multi_scale=false", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(e["type"] == "log" for e in events(run_dir)):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    end = events(run_dir)[-1]
    assert end["type"] == "end" and end["status"] == "cancelled" and end["exit_code"] == 130
    jobs = [j for j in JobRegistry(session_workspace.db_path).list() if j["out_dir"] == str(run_dir.resolve())]
    assert jobs and jobs[0]["status"] == "cancelled" and jobs[0]["exit_code"] == 130


@pytest.mark.slow
def test_init_from_a_run_starts_from_its_best_weights(session_workspace, tiny_dataset, rfdetr_run):
    """--init-from RUN: the best model.pth becomes the starting weights (loaded by rfdetr's own loader);
    this run also keeps the progress bars on (the UI's jobs do)."""
    import torch
    import yaml

    from toolbox.models.config import PIPELINES_DIR, read_yaml
    from toolbox.rfdetr.model import build_rfdetr, read_checkpoint, torch_module

    best = rfdetr_run / "checkpoints" / "best" / "model.pth"
    net = torch_module(build_rfdetr(read_yaml(PIPELINES_DIR / "RF-DETR-N.yaml"), 3, pretrained=str(best),
                                    input_size=RF_SIZE))
    saved = read_checkpoint(best)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    import toolbox

    run_dir = toolbox.train(dataset=tiny_dataset, model="RF-DETR-N", run="rfdetr-init", max_steps=1, batch_size=2,
                            grad_accum_steps=1, input_size=RF_SIZE, init_from=rfdetr_run.name, num_workers=0,
                            overrides=["train.multi_scale=false"], workspace=session_workspace, progress=True)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["pretrained"] == str(best.resolve()) and cfg["train"]["init_from"] == rfdetr_run.name
    ev = events(run_dir)
    assert ev[0]["weights"] == {"pretrained": str(best.resolve())} and ev[-1]["status"] == "ok"


@pytest.mark.slow
def test_early_stop_on_the_toolbox_ap(session_workspace, tmp_path):
    """--early-stop-patience counts the toolbox's evaluations: with lr 0 the weights (and AP) never change,
    so the second evaluation is no improvement and patience 1 stops the run after epoch 2 of 4 (rfdetr
    pads a short epoch to 5 batches: batch 1 keeps that to 5 images)."""
    import toolbox
    from tests.fixtures.data import make_coco_dataset

    data = make_coco_dataset(tmp_path / "two")  # 2 train images, 1 val image
    run_dir = toolbox.train(dataset=str(data), model="RF-DETR-N", run="rfdetr-early", epochs=4, batch_size=1,
                            grad_accum_steps=1, lr=0.0, input_size=RF_SIZE, pretrained="none", num_workers=0,
                            early_stop_patience=1, log_interval=1,
                            overrides=["train.multi_scale=false", "train.lr_encoder=0"],
                            workspace=session_workspace, progress=False)
    ev = events(run_dir)
    evals = [e for e in ev if e["type"] == "eval"]
    assert [e["epoch"] for e in evals] == [1, 2] and evals[0]["metrics"] == evals[1]["metrics"]
    (stop,) = [e for e in ev if e["type"] == "early_stop"]
    per_epoch = ev[0]["steps_per_epoch"]
    assert stop["evaluations"] == 1 and stop["step"] == 2 * per_epoch and ev[0]["total_steps"] == 4 * per_epoch
    assert [e["which"] for e in ev if e["type"] == "checkpoint"] == ["best", "last", "last"]
    assert ev[-1]["status"] == "ok" and ev[-1]["step"] == 2 * per_epoch


@pytest.mark.slow
def test_grad_accumulation_counts_optimizer_steps(session_workspace, tiny_dataset):
    """--grad-accum-steps 2: a step is one optimizer update over two batches (Lightning's
    accumulate_grad_batches), as for RT-DETR. rfdetr samples an epoch of at least 5 effective batches, so the
    16 images give 5 steps an epoch here (20 images), not 4."""
    from toolbox.rfdetr.model import read_checkpoint

    import toolbox

    run_dir = toolbox.train(dataset=tiny_dataset, model="RF-DETR-N", run="rfdetr-accum", max_steps=2, batch_size=2,
                            grad_accum_steps=2, log_interval=1, input_size=RF_SIZE, pretrained="none",
                            num_workers=0, overrides=["train.multi_scale=false"], workspace=session_workspace,
                            progress=False)
    ev = events(run_dir)
    assert ev[0]["steps_per_epoch"] == 5 and ev[0]["effective_batch"] == 4
    assert [e["step"] for e in ev if e["type"] == "log"] == [1, 2]
    ckpt = read_checkpoint(run_dir / "checkpoints" / "last" / "model.pth")
    assert ckpt["global_step"] == 2
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 4  # 2 x 2 batches
