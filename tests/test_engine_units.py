"""Unit tests of the engine's parts on real Paddle layers and real arrays: configuration resolution,
augmentation geometry, batch plans, optimizer groups, warm-up, EMA, checkpoints (incl. kill -9)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from toolbox.data import transforms as T  # noqa: E402
from toolbox.data.loader import BatchPlan  # noqa: E402
from toolbox.engine import config as C  # noqa: E402
from toolbox.errors import UsageError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = {"name": "d", "dir": "/nowhere", "cat_ids": [1, 2], "label_list": ["a", "b"]}


def _resolve(model="RT-DETR-R18", options=None, overrides=(), world=1):
    from toolbox.models import load_config

    return C.resolve(model_name=model, model_source=model, model_cfg=load_config(model), dataset=DATASET,
                     options=options or {}, overrides=C.parse_overrides(overrides), world_size=world)


# ---------------------------------------------------------------------------------------------- config
def test_recipe_defaults_come_from_the_pipeline_file():
    cfg = _resolve()
    t = cfg["train"]
    assert (t["epochs"], t["batch_size"], t["global_batch"], t["base_lr"]) == (72, 4, 16, 1e-4)
    assert t["lr_scaling"] == "none" and t["lr"] == 1e-4  # PaddleDetection's base_lr, as given at batch 4
    assert t["ema"] and t["ema_decay"] == 0.9999 and t["clip_grad_norm"] == 0.1
    assert t["warmup_steps"] == "auto" and t["warmup_steps_max"] == 2000 and t["ema_warmup_steps"] == 2000
    assert t["pretrained_default"].startswith("https://") and t["no_aug_epochs"] == 0
    assert cfg["model"]["num_classes"] == 2 and cfg["model"]["label_list"] == ["a", "b"]
    assert cfg["augment"]["sizes"][0] == 480 and cfg["augment"]["sizes"][-1] == 800
    v2 = _resolve("RT-DETRv2-R18")["train"]
    assert v2["no_aug_epochs"] == 3  # strong_aug_stop_epoch 117 of 120


def test_options_and_overrides_take_effect():
    cfg = _resolve(options={"lr": 4e-4, "batch_size": 2, "grad_accum_steps": 4, "input_size": 320,
                            "warmup_steps": 7, "sampling": "discrete", "epochs": 3},
                   overrides=["train.weight_decay=0", "augment.flip_prob=0.25", "transformer.eval_idx=1",
                              "num_queries=50"], world=2)
    t = cfg["train"]
    assert t["effective_batch"] == 2 * 4 * 2
    assert t["lr"] == 4e-4  # the given lr is used as given (lr_scaling none)
    assert t["weight_decay"] == 0 and t["warmup_steps"] == 7 and t["epochs"] == 3
    assert cfg["augment"]["flip_prob"] == 0.25
    assert cfg["model"]["input_size"] == 320 and cfg["model"]["sampling"] == "discrete"
    assert cfg["model"]["overrides"] == {"transformer.eval_idx": 1, "num_queries": 50}
    assert cfg["augment"]["sizes"] == C.scale_sizes(320, cfg["augment"]["scales_640"])
    assert min(cfg["augment"]["sizes"]) == 256 and max(cfg["augment"]["sizes"]) == 384
    assert _resolve(overrides=["train.lr_scaling=sqrt"], options={"batch_size": 4})["train"]["lr"] == \
        pytest.approx(1e-4 * 0.5)  # sqrt(4 / 16)
    assert _resolve(overrides=["train.lr_scaling=linear"], options={"batch_size": 4})["train"]["lr"] == \
        pytest.approx(1e-4 * 0.25)  # 4 / 16


@pytest.mark.parametrize("options, overrides, match", [
    ({"input_size": 100}, [], "multiple of 32"),
    ({"batch_size": 0}, [], "batch-size"),
    ({"epochs": -1}, [], "epochs"),
    ({"max_steps": 0}, [], "max-steps"),
    ({}, ["nokey"], "KEY=VALUE"),
    ({"sampling": "bilinear"}, [], "grid or discrete"),
    ({}, ["train.weight_decy=0"], "unknown train key 'weight_decy'"),
    ({}, ["data.dir=/x"], "--dataset"),
])
def test_bad_options_are_usage_errors(options, overrides, match):
    with pytest.raises(UsageError, match=match):
        _resolve(options=options, overrides=overrides)


# ---------------------------------------------------------------------------------------------- data
def _sample(rng, n=5, w=200, h=150):
    xy = rng.uniform(0, [w - 40, h - 40], size=(n, 2))
    wh = rng.uniform(10, 40, size=(n, 2))
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return {"image": img, "boxes": np.concatenate([xy, xy + wh], 1).astype(np.float32),
            "labels": np.arange(n, dtype=np.int64), "image_id": 1, "orig_size": (w, h), "idx": 0}


def test_augmentations_keep_boxes_on_their_pixels():
    rng = np.random.default_rng(0)
    s = _sample(rng)
    # mark every box's interior with a unique colour, then check it is still under the box afterwards
    img = np.zeros_like(s["image"])
    for k, b in enumerate(s["boxes"].astype(int)):
        img[b[1]:b[3], b[0]:b[2]] = (k + 1) * 40
    s["image"] = img
    for seed in range(30):
        r = np.random.default_rng(seed)
        out = T.hflip(T.iou_crop(T.zoom_out(s, r, prob=1.0), r, prob=1.0), r, prob=1.0)
        assert len(out["boxes"]) == len(out["labels"]) >= 1
        h, w = out["image"].shape[:2]
        assert (out["boxes"] >= 0).all() and (out["boxes"][:, [0, 2]] <= w).all() and (out["boxes"][:, [1, 3]] <= h).all()
        for b, lab in zip(out["boxes"], out["labels"]):
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            assert out["image"][min(cy, h - 1), min(cx, w - 1), 0] in ((lab + 1) * 40, 0)  # overlap may hide


def test_photometric_distort_changes_pixels_not_shape():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    out = T.photometric_distort(img, np.random.default_rng(3), prob=1.0)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert np.array_equal(T.photometric_distort(img, np.random.default_rng(3), prob=0.0), img)


def test_collate_gives_normalised_cxcywh_at_the_batch_size():
    rng = np.random.default_rng(0)
    samples = [_sample(rng), _sample(rng, n=0)]
    images, targets = T.collate_train(samples, 96, rng)
    assert images.shape == (2, 3, 96, 96) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    b = targets[0]["boxes"]
    assert b.shape == (5, 4) and (b >= 0).all() and (b <= 1).all()
    x1y1 = samples[0]["boxes"][:, :2] / np.array([200, 150])
    assert np.allclose(b[:, :2] - b[:, 2:] / 2, x1y1, atol=1e-5)
    assert targets[1]["boxes"].shape == (0, 4) and targets[1]["labels"].shape == (0,)


def test_batch_plan_is_seeded_sharded_and_complete():
    p = BatchPlan(10, 3, seed=5)
    assert p.epoch(0) == BatchPlan(10, 3, seed=5).epoch(0) != p.epoch(1)
    assert sorted(i for b in p.epoch(0) for i in b) == list(range(10)) and len(p) == 4
    r0, r1 = (BatchPlan(9, 2, seed=1, rank=r, world_size=2) for r in (0, 1))
    assert len(r0) == len(r1) == 3
    seen = [i for b in r0.epoch(2) + r1.epoch(2) for i in b]
    assert set(seen) == set(range(9)) and len(seen) == 10  # padded by one repeat so ranks stay in step


def test_loader_threads_are_used_when_num_workers_is_set():
    import threading

    from toolbox.data.loader import batches

    names = []
    list(batches([[0], [1], [2]], lambda bi, idx: names.append(threading.current_thread().name), num_workers=2))
    assert all(n.startswith("loader") for n in names)
    names.clear()
    list(batches([[0], [1]], lambda bi, idx: names.append(threading.current_thread().name), num_workers=0))
    assert names == [threading.current_thread().name] * 2


# ---------------------------------------------------------------------------------------------- optim
class _Net:
    @staticmethod
    def make():
        import paddle

        class Net(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.backbone = paddle.nn.Sequential(
                    paddle.nn.Linear(4, 4, weight_attr=paddle.ParamAttr(learning_rate=0.1)), paddle.nn.BatchNorm1D(4))
                self.head = paddle.nn.Linear(4, 2)
                self.norm = paddle.nn.LayerNorm(2)

            def forward(self, x):
                return self.norm(self.head(self.backbone(x)))

        paddle.seed(0)
        return Net()


def test_param_groups_follow_the_recipe():
    from toolbox.engine.optim import param_settings

    net = _Net.make()
    s = param_settings(net, {"weight_decay": 1e-4, "param_groups": [{"params": "^(?=.*(?:norm|bn)).*$",
                                                                      "weight_decay": 0.0}]})
    assert s["backbone.0.weight"] == (pytest.approx(0.1), 1e-4)   # lr_mult from the ParamAttr, decayed
    assert s["backbone.0.bias"] == (1.0, 1e-4)
    assert s["norm.weight"] == (1.0, 0.0) and s["head.weight"] == (1.0, 1e-4)
    s2 = param_settings(net, {"weight_decay": 1e-4, "backbone_lr_mult": 0.5,
                              "param_groups": [{"params": "^head", "lr_mult": 3.0}]})
    assert s2["backbone.0.weight"][0] == pytest.approx(0.05) and s2["head.weight"][0] == 3.0


def test_real_model_backbone_learns_slower_and_norms_do_not_decay():
    from toolbox.engine.optim import param_settings
    from toolbox.models import build_model

    model = build_model("tiny-test", 3)
    cfg = _resolve("tiny-test")["train"]
    s = param_settings(model, cfg)
    norms = [k for k in s if "norm" in k or ".bn." in k]
    assert norms and all(s[k][1] == 0.0 for k in norms)
    assert any(v[1] > 0 for v in s.values())


def test_optimizer_applies_group_learning_rates_and_clipping():
    import paddle

    from toolbox.engine.optim import build_optimizer

    net = _Net.make()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    opt = build_optimizer(net, {"lr": 1e-2, "weight_decay": 0.0, "clip_grad_norm": 0.1})
    (net(paddle.rand([8, 4])) ** 2).sum().backward()
    opt.step()
    moved = {k: np.abs(v.numpy() - before[k]).max() for k, v in net.state_dict().items() if "_mean" not in k
             and "_variance" not in k}
    # Adam steps are ~lr per element: the backbone weight moves ~10x less (lr_mult 0.1)
    assert moved["backbone.0.weight"] == pytest.approx(1e-3, rel=0.05)
    assert moved["head.weight"] == pytest.approx(1e-2, rel=0.05)


def test_warmup_is_five_percent_of_the_planned_steps_unless_given():
    assert C.planned_warmup("auto", 1000, 2000)[0] == 50  # 20 epochs of 200 images at batch 4
    assert C.planned_warmup(None, 30, 2000)[0] == 2  # round(1.5)
    assert C.planned_warmup("auto", 8, 10)[0] == 1  # never 0: the clamp's floor
    assert C.planned_warmup("auto", 10 ** 6, 2000)[0] == 2000  # long runs: the recipe's 2000
    assert C.planned_warmup(7, 1000, 2000) == (7, "fixed") and C.planned_warmup(0, 1000, 2000)[0] == 0
    assert "5% of 1000 planned steps" in C.planned_warmup("auto", 1000, 2000)[1]
    assert _resolve(overrides=["train.warmup_steps=auto"])["train"]["warmup_steps"] == "auto"
    with pytest.raises(UsageError, match="warmup-steps"):
        _resolve(options={"warmup_steps": -1})


def test_warmup_is_linear_then_constant():
    from toolbox.engine.optim import LRSchedule

    s = LRSchedule(1e-3, 10, 0.001, milestones_steps=[20], gamma=0.1)
    assert s(0) == pytest.approx(1e-6) and s(5) == pytest.approx(1e-3 * (0.001 * 0.5 + 0.5))
    assert s(10) == s(19) == pytest.approx(1e-3) and s(20) == pytest.approx(1e-4)
    assert LRSchedule(1e-3, 0)(0) == 1e-3


def test_ema_follows_the_warmup_formula():
    import paddle

    from toolbox.engine.ema import ModelEMA

    net = _Net.make()
    ema = ModelEMA(net, decay=0.9, warmup_steps=2)
    w0 = net.head.weight.numpy().copy()
    net.head.weight.set_value(w0 + 1.0)
    ema.update(net)
    d = 0.9 * (1 - np.exp(-1 / 2))
    assert np.allclose(ema.shadow["head.weight"].numpy(), d * w0 + (1 - d) * (w0 + 1), atol=1e-6)
    sd = ema.state_dict(net)
    assert "backbone.1._mean" in sd and np.allclose(sd["head.weight"].numpy(), ema.shadow["head.weight"].numpy())
    assert paddle.is_tensor(sd["head.weight"])


# ---------------------------------------------------------------------------------------------- checkpoint
def _save_ckpt(folder, net, step):
    from toolbox.engine import checkpoint as ckpt
    from toolbox.engine.optim import LRSchedule, build_optimizer, portable_state

    opt = build_optimizer(net, {"lr": 1e-3, "weight_decay": 0.0, "clip_grad_norm": 0.1})
    return ckpt.save(folder, weights=net.state_dict(), raw_weights=net.state_dict(),
                     optimizer_state=portable_state(opt.state_dict(), net), schedule_state=LRSchedule(1, 0).state_dict(),
                     loop_state={"epoch": 1, "step": step, "batch": 0}, info={"step": step})


def test_checkpoint_round_trip_and_portable_optimizer_state(tmp_path):
    import paddle

    from toolbox.engine import checkpoint as ckpt
    from toolbox.engine.optim import build_optimizer, local_state, portable_state

    net = _Net.make()
    opt = build_optimizer(net, {"lr": 1e-3, "weight_decay": 0.0, "clip_grad_norm": 0.1})
    net(paddle.rand([4, 4])).sum().backward()
    opt.step()
    ckpt.save(tmp_path / "last", weights=net.state_dict(), raw_weights=None,
              optimizer_state=portable_state(opt.state_dict(), net), schedule_state={"last_step": 3},
              loop_state={"epoch": 2, "step": 3, "batch": 1})
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == ["checkpoint.json", "model.pdopt", "model.pdparams"]
    state = ckpt.load(tmp_path / "last")
    assert state["loop"]["step"] == 3 and state["schedule"]["last_step"] == 3
    assert any(k.startswith("head.weight|moment1") for k in state["optimizer"])
    net2 = _Net.make()  # other Paddle-generated names in this process
    opt2 = build_optimizer(net2, {"lr": 1e-3, "weight_decay": 0.0, "clip_grad_norm": 0.1})
    opt2.set_state_dict(local_state(state["optimizer"], net2))
    net2(paddle.rand([4, 4])).sum().backward()
    opt2.step()
    def beta1_pow(o, n):
        return float([v for k, v in o.state_dict().items() if k.startswith(n.head.weight.name + "_beta1_pow")][0])

    # the restored Adam state continued (one more factor of beta1), it did not start afresh
    assert beta1_pow(opt2, net2) == pytest.approx(beta1_pow(opt, net) * 0.9)
    rng = ckpt.rng_state()
    a = np.random.rand(3)
    ckpt.set_rng_state(rng)
    assert np.array_equal(a, np.random.rand(3))


KILLER = r"""
import os, sys, time
sys.path.insert(0, {root!r})
os.environ["OMP_NUM_THREADS"] = "1"
from tests.test_engine_units import _Net, _save_ckpt
net = _Net.make()
step = 0
while True:
    step += 1
    _save_ckpt({folder!r}, net, step)
    print(step, flush=True)
"""


def test_kill_9_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    from toolbox.engine import checkpoint as ckpt

    folder = tmp_path / "checkpoints" / "last"
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=str(ROOT), folder=str(folder)))
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip()  # at least one complete save
        time.sleep(delay)  # then kill it at some moment of a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = ckpt.load(folder)  # recovers an interrupted swap, loads all three files
        assert state["loop"]["step"] >= 1 and "head.weight" in state["weights"]
        assert state["raw_weights"] is not None and state["optimizer"] is not None


# ---------------------------------------------------------------------------------------------- devices
def test_device_parsing_and_the_launch_command():
    from toolbox.engine import distributed as D

    assert D.parse_device("cpu") == ("cpu", []) and D.parse_device("gpu") == ("gpu", [0])
    assert D.parse_device("gpu:0,1") == ("gpu", [0, 1])
    with pytest.raises(UsageError):
        D.parse_device("tpu")
    assert D.needs_launch("gpu:0,1") and not D.needs_launch("gpu:1") and not D.needs_launch("cpu")
    cmd = D.launch_command(["train", "--device", "gpu:0,1", "--run", "r"], [0, 1], "/tmp/logs", python="py")
    assert cmd[:5] == ["py", "-m", "paddle.distributed.launch", "--devices", "0,1"]
    assert cmd[7].endswith("toolbox/engine/launch_entry.py") and cmd[8:] == ["train", "--device", "gpu:0,1", "--run", "r"]
    assert Path(cmd[7]).is_file()


def test_amp_on_cpu_and_gpu_without_cuda_fail_clearly():
    import paddle

    from toolbox.engine import distributed as D
    from toolbox.errors import RuntimeFailure

    with pytest.raises(UsageError, match="--amp needs a GPU"):
        D.setup_device("cpu", amp=True)
    if not paddle.device.is_compiled_with_cuda():
        with pytest.raises(RuntimeFailure, match="paddlepaddle-gpu"):
            D.setup_device("gpu", amp=True)


def test_strong_augmentation_switches_off_for_the_last_epochs(session_workspace, tiny_dataset):
    from toolbox.data.loader import CocoDetection, TrainBatches

    ds = CocoDetection(session_workspace.dataset_dir(tiny_dataset), "train")
    cfg = dict(C.AUGMENT_DEFAULTS, flip_prob=0.0, distort_prob=1.0, expand_prob=1.0, crop_prob=1.0)
    tb = TrainBatches(ds, BatchPlan(len(ds), 2, seed=0), cfg, [64, 96, 128], seed=0, no_aug_from_epoch=3,
                      fixed_size=96)
    plain = T.collate_eval([ds.load(i) for i in tb.plan.epoch(3)[0]], 96)[0]
    strong = list(tb.epoch(2))
    late = list(tb.epoch(3))
    assert {b[0].shape[-1] for b in strong} > {96} and {b[0].shape[-1] for b in late} == {96}
    assert np.allclose(late[0][0], plain, atol=1e-6)  # no distortion / zoom-out / crop, bicubic at 96
