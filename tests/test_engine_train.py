"""Training runs of the tiny-test model on the tiny dataset: outputs, exact resume, every option's effect,
NaN and cancel handling. Each run is real (Paddle trains a few steps on CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")

import toolbox  # noqa: E402
from toolbox.errors import RuntimeFailure, UsageError  # noqa: E402
from toolbox.events import read_events  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def events(run_dir, kind=None):
    evs = list(read_events(Path(run_dir) / "events.jsonl"))
    return [e for e in evs if kind is None or e["type"] == kind]


def quick(ws, ds, run, **kw):
    kw.setdefault("pretrained", "none")
    kw.setdefault("num_workers", 0)
    return toolbox.train(dataset=ds, model=kw.pop("model", "tiny-test"), run=run, workspace=ws, progress=False, **kw)


def test_tiny_run_writes_the_run_folder(tiny_run):
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["model"]["name"] == "tiny-test" and cfg["model"]["num_classes"] == 3
    assert cfg["model"]["label_list"] == ["ball", "block", "cone"] and cfg["model"]["input_size"] == 128
    assert cfg["train"]["pretrained_used"] is None
    types = [e["type"] for e in events(tiny_run)]
    assert types[0] == "start" and types[-1] == "end" and {"log", "eval", "checkpoint"} <= set(types)
    log = events(tiny_run, "log")[-1]
    assert {"epoch", "step", "total_steps", "losses", "lr", "images_per_s", "eta_s"} <= set(log)
    assert log["step"] == log["total_steps"] == 8 and "loss" in log["losses"]
    ev = events(tiny_run, "eval")[-1]
    assert list(ev["metrics"]) == METRICS and [c["name"] for c in ev["per_class"]] == ["ball", "block", "cone"]
    end = events(tiny_run, "end")[-1]
    assert (end["status"], end["exit_code"], end["error"]) == ("ok", 0, None)
    for which in ("best", "last"):
        names = sorted(p.name for p in (tiny_run / "checkpoints" / which).iterdir())
        assert names == ["checkpoint.json", "model.pdema", "model.pdopt", "model.pdparams"]
    text = (tiny_run / "train.log").read_text()
    assert "lr 0.0001 used for an effective batch of 2" in text and "(lr_scaling none)" in text
    # 8 planned steps: warm-up 5 % → 1 step (the floor); tiny-test's EMA warm-up (10) is kept as configured
    assert "warm-up 1 steps (auto: 5% of 8 planned steps, clamped to [1, 10])" in text
    assert "EMA decay 0.9999 with warm-up 10 steps (fixed)" in text
    start = events(tiny_run, "start")[0]
    assert (start["warmup_steps"], start["ema_warmup_steps"]) == (1, 10)
    assert [e["lr"] for e in events(tiny_run, "log")] == [pytest.approx(1e-4)] * 4  # past the 1-step warm-up
    assert cfg["train"]["warmup_steps"] == 1  # config.yaml holds the value used (resume continues it)


def test_checkpoint_holds_ema_weights_and_raw_weights(tiny_run):
    import paddle

    from toolbox.models import build_model

    last = tiny_run / "checkpoints" / "last"
    ema, raw = paddle.load(str(last / "model.pdparams")), paddle.load(str(last / "model.pdema"))
    model = build_model("tiny-test", 3)
    assert set(ema) == set(model.state_dict())
    differs = [k for k in ema if not np.array_equal(np.asarray(ema[k]), np.asarray(raw[k]))]
    assert differs  # the EMA average is not the raw weights
    opt = paddle.load(str(last / "model.pdopt"))
    assert opt["toolbox"]["step"] == 8 and opt["toolbox"]["ema_updates"] == 8 and "LR_Scheduler" in opt


def test_resume_continues_step_count_and_loss_curve(session_workspace, tiny_dataset):
    ws, ds = session_workspace, tiny_dataset
    straight = quick(ws, ds, "straight", max_steps=5, log_interval=1, eval_interval=50)
    part = quick(ws, ds, "resumed", max_steps=2, log_interval=1, eval_interval=50)
    assert [e["step"] for e in events(part, "log")] == [1, 2]
    toolbox.train(run="resumed", resume=True, max_steps=5, workspace=ws, progress=False)
    a = [(e["step"], e["losses"]["loss"], e["lr"]) for e in events(straight, "log")]
    b = [(e["step"], e["losses"]["loss"], e["lr"]) for e in events(part, "log")]
    assert [s for s, _, _ in b] == [1, 2, 3, 4, 5]
    assert np.allclose([x[1:] for x in a], [x[1:] for x in b], rtol=1e-4)  # the same curve, exactly continued
    starts = events(part, "start")
    assert starts[1]["resumed"] is True and starts[1]["weights"]["step"] == 2


def test_options_take_effect_in_one_run(session_workspace, tiny_dataset):
    """batch size, accumulation, lr, warm-up, input size, sampling, intervals, seed and -o in one run."""
    ws, ds = session_workspace, tiny_dataset
    run = quick(ws, ds, "options", epochs=2, batch_size=4, grad_accum_steps=2, lr=3e-4, warmup_steps=3,
                input_size=96, sampling="discrete", log_interval=1, eval_interval=2, save_interval=2, seed=7,
                overrides=["train.weight_decay=0", "num_queries=40", "augment.flip_prob=0"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    start = events(run, "start")[0]
    # 16 images / batch 4 = 4 batches per epoch; accumulation 2 → 2 optimizer steps per epoch
    assert start["steps_per_epoch"] == 2 and start["total_steps"] == 4 and start["effective_batch"] == 8
    assert cfg["train"]["lr"] == 3e-4  # used as given at the effective batch 8 (lr_scaling none)
    lrs = [e["lr"] for e in events(run, "log")]
    assert [e["step"] for e in events(run, "log")] == [1, 2, 3, 4]
    assert lrs[0] == pytest.approx(3e-4 * 0.001) and lrs[0] < lrs[1] < lrs[2] < lrs[3] == pytest.approx(3e-4)
    assert len(events(run, "eval")) == 1 and events(run, "eval")[0]["epoch"] == 2  # --eval-interval 2
    assert [e["which"] for e in events(run, "checkpoint")] == ["best", "last"]  # --save-interval 2: epoch 2 only
    assert cfg["model"]["input_size"] == 96 and cfg["augment"]["sizes"] == [96]
    assert cfg["train"]["seed"] == 7 and cfg["train"]["weight_decay"] == 0 and cfg["augment"]["flip_prob"] == 0
    from toolbox.engine.api import load_model_for_inference

    net, labels, size, _, _ = load_model_for_inference(run="options", model=None, weights="last", workspace=ws)
    assert size == 96 and net.transformer.sampling == "discrete" and net.transformer.num_queries == 40


def test_seed_and_max_steps(session_workspace, tiny_dataset):
    ws, ds = session_workspace, tiny_dataset
    a = quick(ws, ds, "seed1", max_steps=2, log_interval=1, seed=1, eval_interval=50)
    b = quick(ws, ds, "seed2", max_steps=2, log_interval=1, seed=2, eval_interval=50)
    assert events(a, "end")[0]["step"] == 2 and events(a, "start")[0]["total_steps"] == 2
    la = [e["losses"]["loss"] for e in events(a, "log")]
    lb = [e["losses"]["loss"] for e in events(b, "log")]
    assert la != lb
    # --max-steps inside an epoch still evaluates and saves a resumable 'last'
    assert events(a, "eval") and (a / "checkpoints" / "last" / "model.pdparams").is_file()


def test_early_stop_patience(session_workspace, tiny_dataset):
    # an lr this small cannot improve AP between evaluations: patience 1 stops at the second evaluation
    run = quick(session_workspace, tiny_dataset, "early", epochs=6, batch_size=8, lr=1e-12, warmup_steps=0,
                early_stop_patience=1, log_interval=1)
    stop = events(run, "early_stop")
    assert stop and len(events(run, "eval")) == 2 and events(run, "end")[0]["step"] == 4 < 12


def test_pretrained_path_and_init_from(session_workspace, tiny_dataset, tiny_run):
    ws, ds = session_workspace, tiny_dataset
    src = tiny_run / "checkpoints" / "best" / "model.pdparams"
    a = quick(ws, ds, "from-path", pretrained=str(src), max_steps=1, eval_interval=50)
    w = events(a, "start")[0]["weights"]
    assert w["pretrained"] == str(src)
    b = quick(ws, ds, "from-run", init_from=tiny_run.name, max_steps=1, eval_interval=50)
    assert events(b, "start")[0]["weights"]["init_from"] == str(src)
    # the loaded weights really are the starting point: the first loss equals between the two
    la, lb = (events(r, "log")[0]["losses"]["loss"] for r in (a, b))
    assert la == pytest.approx(lb, rel=1e-5)
    c = quick(ws, ds, "from-none", max_steps=1, eval_interval=50)
    assert events(c, "log")[0]["losses"]["loss"] != pytest.approx(la, rel=1e-3)


def test_offline_pretrained_download_is_exit_3_with_a_hint(session_workspace, tiny_dataset, tmp_path):
    cfg = yaml.safe_load((ROOT / "pipelines" / "tiny-test.yaml").read_text())
    cfg["pretrained"] = "http://127.0.0.1:9/rtdetr_tiny.pdparams"  # nothing listens on port 9
    path = tmp_path / "tiny-online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RuntimeFailure, match="--pretrained none") as e:
        toolbox.train(dataset=tiny_dataset, config=str(path), run="offline", workspace=session_workspace,
                      progress=False)
    assert e.value.exit_code == 3
    end = events(session_workspace.runs / "offline", "end")[0]
    assert end["status"] == "failed" and end["exit_code"] == 3


def test_nan_loss_is_exit_3(session_workspace, tiny_dataset):
    with pytest.raises(RuntimeFailure, match="loss became nan") as e:
        quick(session_workspace, tiny_dataset, "nan", max_steps=2, overrides=["loss.loss_coeff.bbox=.nan"])
    assert e.value.exit_code == 3
    assert events(session_workspace.runs / "nan", "end")[0]["exit_code"] == 3


def test_usage_errors(session_workspace, tiny_dataset):
    ws, ds = session_workspace, tiny_dataset
    with pytest.raises(UsageError, match="--amp needs a GPU"):
        quick(ws, ds, "amp", amp=True, max_steps=1)
    with pytest.raises(UsageError, match="already exists"):
        quick(ws, ds, "tiny-run", max_steps=1)
    with pytest.raises(UsageError, match="exactly one of --model"):
        toolbox.train(dataset=ds, workspace=ws)
    with pytest.raises(UsageError, match="no dataset named"):
        quick(ws, "nope", "x", max_steps=1)
    with pytest.raises(UsageError, match="paddle.distributed.launch"):
        quick(ws, ds, "gpus", device="gpu:0,1")


def _cli(ws, *args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "toolbox", "--workspace", str(ws.root), *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_train_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "toolbox", "train", "--help"], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    for opt in ("--dataset", "--model", "--config", "--run", "-o", "--epochs", "--max-steps", "--batch-size",
                "--grad-accum-steps", "--lr", "--warmup-steps", "--pretrained", "--resume", "--init-from",
                "--sampling", "--device", "--amp", "--input-size", "--num-workers", "--eval-interval",
                "--save-interval", "--log-interval", "--early-stop-patience", "--seed"):
        assert f"{opt} " in out or f"{opt}," in out or f"{opt}\n" in out, opt


@pytest.mark.slow
def test_cli_cancel_ends_with_130_and_keeps_complete_checkpoints(session_workspace, tiny_dataset):
    ws = session_workspace
    proc = _cli(ws, "train", "--dataset", tiny_dataset, "--model", "tiny-test", "--run", "cancel", "--epochs", "50",
                "--pretrained", "none", "--log-interval", "1", "--num-workers", "0", "--no-progress")
    ev = ws.runs / "cancel" / "events.jsonl"
    deadline = time.time() + 120
    def saved_last():
        return any(e["type"] == "checkpoint" and e["which"] == "last" for e in read_events(ev))

    while time.time() < deadline and not saved_last() and proc.poll() is None:
        time.sleep(0.2)
    assert saved_last(), proc.stderr.read() if proc.poll() is not None else ""
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    end = events(ws.runs / "cancel", "end")[-1]
    assert (end["status"], end["exit_code"]) == ("cancelled", 130)
    ck = ws.runs / "cancel" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) in (["best", "last"], ["last"])  # no temporary folders left
    from toolbox.engine import checkpoint as ckpt

    assert ckpt.load(ck / "last")["loop"]["step"] >= 8


def test_cli_bad_dataset_is_one_line_exit_2(session_workspace):
    proc = _cli(session_workspace, "train", "--dataset", "missing", "--model", "tiny-test")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err and "no dataset named 'missing'" in err
