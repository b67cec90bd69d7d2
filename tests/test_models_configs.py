"""pipelines/: every config builds and runs at a small input size, the zoo table is complete, the
recipes say what the papers say, and overrides (flat and dotted) reach the model or fail clearly."""
from __future__ import annotations

import re

import numpy as np
import paddle
import pytest

from tests.conftest import SHARED
from toolbox.errors import UsageError
from toolbox.models import build_model, list_models, load_config, model_names

ZOO = ["RT-DETR-R18", "RT-DETR-R34", "RT-DETR-R50", "RT-DETR-R101", "RT-DETR-L", "RT-DETR-X",
       "RT-DETRv2-R18", "RT-DETRv2-R34", "RT-DETRv2-R50", "RT-DETRv2-R101"]
RF_ZOO = ["RF-DETR-N", "RF-DETR-S", "RF-DETR-M", "RF-DETR-B", "RF-DETR-L"]  # backend: rfdetr
DECODER_LAYERS = {"RT-DETR-R18": 3, "RT-DETR-R34": 4, "RT-DETRv2-R18": 3, "RT-DETRv2-R34": 4}


def test_pipelines_hold_the_zoo_and_tiny_test():
    assert sorted(model_names()) == sorted(ZOO + RF_ZOO + ["tiny-test"])


@pytest.mark.parametrize("name", RF_ZOO)
def test_rfdetr_configs_are_refused_by_the_paddle_engine(name):
    """An rfdetr pipelines/ file must not half-build as a Paddle model: the error names the backend."""
    with pytest.raises(UsageError, match="backend: rfdetr"):
        load_config(name)


@pytest.mark.parametrize("name", ZOO + ["tiny-test"])
def test_every_config_builds(name):
    forward = name in ("tiny-test", "RT-DETR-R18", "RT-DETRv2-R18")  # a forward pass where it is cheap
    if forward:
        model = build_model(name, num_classes=3, input_size=128)
    else:
        with paddle.LazyGuard():  # skip the slow random init of big models: construction is what is tested
            model = build_model(name, num_classes=3, input_size=128)
    cfg = model.config
    assert cfg["model_name"] == name and cfg["num_classes"] == 3 and cfg["input_size"] == 128
    assert model.num_classes == 3
    assert model.transformer.num_queries == cfg["transformer"]["num_queries"]
    assert len(model.transformer.decoder.layers) == DECODER_LAYERS.get(name, 2 if name == "tiny-test" else 6)
    if forward:
        model.eval()
        out = model(paddle.rand([1, 3, 128, 128]))
        q = cfg["transformer"]["num_queries"]
        assert list(out["pred_logits"].shape) == [1, q, 3] and list(out["pred_boxes"].shape) == [1, q, 4]
        boxes = out["pred_boxes"].numpy()
        assert np.isfinite(out["pred_logits"].numpy()).all() and (boxes >= 0).all() and (boxes <= 1).all()


def test_zoo_table():
    rows = [r for r in list_models() if r["backend"] == "paddle"]
    rf = [r for r in list_models() if r["backend"] == "rfdetr"]
    assert sorted(r["name"] for r in rf) == sorted(RF_ZOO)
    assert {r["name"]: r["ap"] for r in rf}["RF-DETR-N"] == 48.4  # rfdetr 1.11.2 README
    assert [r["name"] for r in rows] == [
        "RT-DETR-R18", "RT-DETR-R34", "RT-DETR-L", "RT-DETR-R50", "RT-DETR-X", "RT-DETR-R101",
        "RT-DETRv2-R18", "RT-DETRv2-R34", "RT-DETRv2-R50", "RT-DETRv2-R101"]
    for r in rows:
        assert all(isinstance(r[k], (int, float)) for k in ("ap", "ap50", "params_m", "gflops", "fps_t4", "epochs"))
        assert r["pretrained"].startswith("https://") and r["pretrained"].endswith("_coco.pdparams")
    by_name = {r["name"]: r for r in rows}
    assert by_name["RT-DETR-R18"]["ap"] == 46.5 and by_name["RT-DETR-X"]["ap"] == 54.8
    assert "dec3" in by_name["RT-DETR-R18"]["pretrained"] and "dec4" in by_name["RT-DETR-R34"]["pretrained"]
    assert "120e" in by_name["RT-DETRv2-R18"]["pretrained"] and "6x" in by_name["RT-DETRv2-R50"]["pretrained"]
    official = SHARED / "reference" / "official_weights.md"
    if official.is_file():  # every URL is one PaddleDetection published
        published = set(re.findall(r"https://\S+\.pdparams", official.read_text()))
        for name in ZOO:
            cfg = load_config(name)
            assert cfg["pretrained"] in published, name
            assert cfg["backbone_pretrained"] in published, name


@pytest.mark.parametrize("name", ZOO)
def test_recipes(name):
    cfg = load_config(name)
    t = cfg["train"]
    assert t["base_lr"] == 1e-4 and t["optimizer"]["weight_decay"] == 1e-4 and t["clip_grad_norm"] == 0.1
    assert t["warmup_steps"] == 2000 and t["ema"]["decay"] == 0.9999 and t["ema"]["warmup_steps"] == 2000
    assert t["batch_size"] * t["num_gpus"] == t["global_batch_size"] == 16
    assert cfg["input_size"] == 640 and cfg["postprocess"]["num_top_queries"] == 300
    pre = cfg["preprocess"]
    v2 = cfg["arch"] == "RT-DETRv2"  # PaddleDetection's RT-DETRv2 readers resize bilinearly (interp: 1)
    assert pre["resize"] == {"keep_ratio": False, "interp": "linear" if v2 else "cubic"}
    assert pre["normalize"]["mean"] == [0.0, 0.0, 0.0] and pre["normalize"]["std"] == [1.0, 1.0, 1.0]
    v2 = cfg["arch"] == "RT-DETRv2"
    assert t["epochs"] == (120 if name in ("RT-DETRv2-R18", "RT-DETRv2-R34") else 72)
    assert (t["strong_aug_stop_epoch"] is not None) == v2
    if v2:
        assert cfg["transformer"]["num_decoder_points"] == [4, 4, 4]
        assert t["strong_aug_stop_epoch"] == t["epochs"] - 3 if t["epochs"] == 120 else t["epochs"] - 1


def test_tiny_test_is_small_and_keeps_k_valid():
    cfg = load_config("tiny-test")
    assert cfg["zoo"] is None and cfg["pretrained"] == "none" and cfg["input_size"] <= 160
    # K = 300 detections need num_queries x num_classes >= 300 (3 classes: the tiny demo dataset)
    assert cfg["transformer"]["num_queries"] * 3 >= cfg["postprocess"]["num_top_queries"]
    model = build_model("tiny-test", num_classes=3)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) < 2_000_000


def test_tiny_test_trains_a_step():
    paddle.seed(0)
    model = build_model("tiny-test", num_classes=3)
    model.train()
    targets = [{"labels": paddle.to_tensor([0, 2], dtype="int64"),
                "boxes": paddle.to_tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.3, 0.1, 0.1]], dtype="float32")},
               {"labels": paddle.to_tensor([1], dtype="int64"),
                "boxes": paddle.to_tensor([[0.6, 0.4, 0.3, 0.3]], dtype="float32")}]
    losses = model(paddle.rand([2, 3, 128, 128]), targets)
    assert np.isfinite(float(losses["loss"]))
    losses["loss"].backward()
    assert model.backbone.conv1.conv1_1.conv.weight.grad is not None


def test_overrides_reach_the_model():
    model = build_model("RT-DETRv2-R18", 3, eval_idx=1, sampling="discrete", num_queries=50,
                        **{"transformer.num_denoising": 20, "backbone.freeze_at": 0})
    cfg = model.config
    assert cfg["transformer"]["eval_idx"] == 1 and cfg["transformer"]["num_queries"] == 50
    assert cfg["transformer"]["cross_attn_sampling_method"] == "discrete"
    assert model.transformer.num_queries == 50 and model.transformer.sampling == "discrete"
    assert model.backbone.conv1.conv1_1.conv.weight.stop_gradient
    # CLI strings arrive typed
    cfg = load_config("RT-DETR-R18", {"transformer.eval_idx": "-2", "train.base_lr": "5e-5", "input_size": "320"})
    assert cfg["transformer"]["eval_idx"] == -2 and cfg["train"]["base_lr"] == 5e-5 and cfg["input_size"] == 320


@pytest.mark.parametrize("overrides, message", [
    ({"eval_idx": 3}, r"eval_idx=3 must lie in \[-3, 2\]"),
    ({"input_size": 100}, "multiple of 32"),
    ({"sampling": "bilinear"}, "grid or discrete"),
    ({"colour": "blue"}, "unknown key"),
    ({"train.epoch": 3}, "no such key"),
    ({"num_classes": 0}, "positive integer"),
    ({"num_decoder_points": [4, 4]}, "one value per level"),
    ({"input_size": 96}, "fewer than num_queries=300"),
])
def test_bad_overrides_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        load_config("RT-DETR-R18", overrides)


def test_unknown_model_and_bad_section_key():
    with pytest.raises(UsageError, match="unknown model 'RT-DETR-R19'"):
        load_config("RT-DETR-R19")
    with pytest.raises(UsageError, match="section transformer"):
        build_model("tiny-test", 3, **{"transformer.num_decoder_pointz": 4})


def test_config_from_a_yaml_path_and_case_insensitive_name(tmp_path):
    import yaml

    cfg = load_config("rt-detr-r18")
    assert cfg["model_name"] == "RT-DETR-R18"
    assert load_config("RT-DETR-R18.yaml")["model_name"] == "RT-DETR-R18"
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**load_config("tiny-test"), "model_name": "mine"}))
    assert build_model(path, 2).config["model_name"] == "mine"
