"""Export building blocks without a trained model: the numpy CPU stages against the model's own Paddle
code, IoU matching, infer_cfg round trip, option errors."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_numpy_postprocess_equals_the_models():
    import paddle

    from toolbox.export import rtdetr_cpu
    from toolbox.models import postprocess

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 50, 7)).astype(np.float32)
    boxes = rng.uniform(0.05, 0.95, (2, 50, 4)).astype(np.float32)
    boxes[0, 0] = [0.02, 0.98, 0.3, 0.3]  # pokes out of the image: clipped
    sizes = np.array([[640, 480], [33, 200]], np.int64)
    ref = [t.numpy() for t in postprocess(paddle.to_tensor(logits), paddle.to_tensor(boxes), paddle.to_tensor(sizes), 300)]
    got = rtdetr_cpu.postprocess(logits, boxes, sizes, 300)
    assert [g.dtype for g in got] == [np.int64, np.float32, np.float32]
    assert got[0].shape == (2, 300) and got[1].shape == (2, 300, 4)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
    np.testing.assert_allclose(got[2], ref[2], atol=1e-6)
    assert got[1][..., 0::2].max() <= 640 and got[1].min() >= 0


def test_numpy_query_selection_equals_the_models():
    import paddle

    from toolbox.export import rtdetr_cpu
    from toolbox.models import build_model

    paddle.seed(1)
    model = build_model("tiny-test", 3)
    model.eval()
    with paddle.no_grad():
        memory, out_mem, enc_logits, enc_unact, _ = model.transformer.encode(model.extract(paddle.rand([1, 3, 128, 128])))
        target, ref_unact, _, _ = model.transformer.select_queries(out_mem, enc_logits, enc_unact)
    t, r = rtdetr_cpu.select_queries(out_mem.numpy(), enc_logits.numpy(), enc_unact.numpy(), model.transformer.num_queries)
    np.testing.assert_array_equal(t, target.numpy())
    np.testing.assert_array_equal(r, ref_unact.numpy())


def test_iou_matching_ignores_order_and_catches_moved_boxes():
    from toolbox.export.compare import match_detections

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 50, (30, 2))], 1).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    scores = np.sort(rng.uniform(0, 1, 30))[::-1].astype(np.float32)
    perm = rng.permutation(30)
    same = match_detections((labels, boxes, scores), (labels[perm], boxes[perm], scores[perm] + 1e-4))
    assert same.ok and same.compared == 20 and same.min_iou == pytest.approx(1.0)
    moved = boxes.copy()
    moved[perm[:1]] += np.float32(40)  # one box moved far
    worse = match_detections((labels, boxes, scores), (labels, moved, scores), top=30)
    assert not worse.ok and worse.matched == 29
    relabelled = match_detections((labels, boxes, scores), ((labels + 1) % 3, boxes, scores), top=30)
    assert relabelled.matched < 30

def _raw_outputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (2, 300, 80)).astype(np.float32)
    boxes = rng.uniform(0.05, 0.95, (2, 300, 4)).astype(np.float32)
    return logits, boxes


def test_raw_parity_pairs_reordered_queries_and_a_boundary_swap():
    from toolbox.export.compare import paired_raw_diff

    logits, boxes = _raw_outputs()
    # slots 10/11 trade places (near-tied encoder scores) and the last slot is a different position
    perm = np.arange(300)
    perm[[10, 11]] = [11, 10]
    cl, cb = logits[:, perm].copy(), boxes[:, perm].copy()
    other_l, other_b = _raw_outputs(1)
    cl[:, -1], cb[:, -1] = other_l[:, -1], other_b[:, -1]
    cl += 5e-5  # within atol 1e-4
    naive = float(np.abs(cl - logits).max())
    assert naive > 1e-4  # slot by slot this would be refused
    out = paired_raw_diff(logits, boxes, cl, cb, atol=1e-4, boundary=6)
    assert out["ok"], out
    assert out["reordered"] == 4 and out["unpaired"] == 2 and out["unpaired_inside"] == 0
    # float32 logits up to ~15 carry ~1e-6 rounding, so the added 5e-5 comes back within 2e-6
    assert out["pred_logits"] == pytest.approx(5e-5, abs=2e-6)


def test_raw_parity_pairs_every_query_whose_counterpart_is_there():
    """Recorded case (RT-DETRv2-R18, 640, seeded, Intel Xeon): one query left the top-300 and another entered.
    Anchor boxes lie on a 0.0125 grid, so many assignments tie on total distance; a plain minimum-sum
    assignment shifted 16 queries one anchor sideways and left them unpaired although each one's exact
    counterpart (distance 0) was there. Pairing must leave only the one swapped position unpaired."""
    from pathlib import Path

    from toolbox.export.compare import paired_raw_diff

    data = np.load(Path(__file__).parent / "fixtures" / "pairing_v2r18_640_boxes.npz")
    rb, cb = data["ref_boxes"], data["cand_boxes"]
    logits = np.zeros(rb.shape[:2] + (1,), np.float32)
    out = paired_raw_diff(logits, rb, logits, cb, atol=8.7e-4, boundary=6)   # the failed export's tolerance
    assert out["ok"] and out["unpaired"] == 1 and out["unpaired_inside"] == 0, out


@pytest.mark.parametrize("what", ["logit", "box", "inner_swap"])
def test_raw_parity_still_fails_on_a_wrong_value(what):
    from toolbox.export.compare import paired_raw_diff

    logits, boxes = _raw_outputs()
    cl, cb = logits.copy(), boxes.copy()
    if what == "logit":
        cl[1, 42, 7] += 3e-4          # one logit off by 3x atol, in a paired query
    elif what == "box":
        cb[0, 100, 2] += 3e-4         # one box off: that query cannot pair, and slot 100 is no boundary
    else:
        other_l, other_b = _raw_outputs(1)
        cl[0, 5], cb[0, 5] = other_l[0, 5], other_b[0, 5]   # a different position well inside the top-Q
    out = paired_raw_diff(logits, boxes, cl, cb, atol=1e-4, boundary=6)
    assert not out["ok"], out



def test_infer_cfg_round_trips(tmp_path):
    import yaml

    from toolbox.export.paddle_static import build_infer_cfg, paddle_stage, read_infer_cfg, write_infer_cfg

    cfg = build_infer_cfg(model_name="tiny-test", arch="RT-DETRv2", num_classes=2, input_size=128,
                          label_list=["猫", "dog"], sampling="grid", stages=[paddle_stage(128)], num_queries=100)
    write_infer_cfg(tmp_path, cfg)
    assert read_infer_cfg(tmp_path) == cfg
    assert json.loads((tmp_path / "infer_cfg.json").read_text(encoding="utf-8")) == cfg
    raw = yaml.safe_load((tmp_path / "infer_cfg.yml").read_text(encoding="utf-8"))
    assert [next(iter(op)) for op in raw["preprocess"]] == ["Resize", "Normalize", "Permute"]
    assert raw["io"]["inputs"][1] == {"name": "orig_target_sizes", "dtype": "int64", "shape": [-1, 2],
                                      "meaning": "original image (width, height)"}
    assert "猫" in (tmp_path / "infer_cfg.yml").read_text(encoding="utf-8")  # readable, not escaped


def test_missing_infer_cfg_is_a_clear_input_error(tmp_path):
    from toolbox.errors import InputError
    from toolbox.export.runtime import Predictor

    with pytest.raises(InputError, match="infer_cfg.yml is missing"):
        Predictor(tmp_path)


@pytest.mark.parametrize("argv, needle", [
    (["export"], "nothing to export"),
    (["export", "--model", "tiny-test", "--weights", "x.pdparams", "--num-classes", "3", "--formats", "onnx,tflite"],
     "unknown export format"),
    (["export", "--run", "a", "--model", "tiny-test"], "either --run or --model"),
    (["export", "--model", "tiny-test", "--weights", "x.pdparams"], "--num-classes"),
])
def test_option_errors_exit_2(workspace, capsys, argv, needle):
    from toolbox.cli import main

    assert main(["--workspace", str(workspace.root), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_missing_shared_file_fails_under_ci(monkeypatch):
    from tests import conftest

    monkeypatch.setattr(conftest, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="absent"):
        conftest.shared_path("no-such-fixture.bin")
    monkeypatch.setattr(conftest, "CI", False)
    with pytest.raises(pytest.skip.Exception):
        conftest.shared_path("no-such-fixture.bin")


def test_export_preprocess_follows_the_models_resize_interpolation():
    """RT-DETRv2 resizes bilinearly (its pipelines file says interp: linear): infer_cfg must say so and the
    export's own runtime must resize that way, or the export check compares against a different input."""
    import cv2

    from toolbox.export.paddle_static import build_infer_cfg
    from toolbox.export.runtime import resize, resize_interp

    kw = dict(model_name="m", arch="RT-DETRv2", num_classes=2, input_size=32, label_list=["a", "b"],
              sampling="grid", stages=[])
    assert resize_interp(build_infer_cfg(**kw)) == "cubic"  # RT-DETR's default when a config names none
    cfg = build_infer_cfg(**kw, interp="linear")
    assert resize_interp(cfg) == "linear"
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    linear = resize(img, 32, resize_interp(cfg))
    assert np.array_equal(linear, cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(linear, resize(img, 32))  # cubic differs on random pixels
