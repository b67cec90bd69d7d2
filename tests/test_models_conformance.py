"""Numerical conformance with PaddleDetection: the same RT-DETR-R18 weights on the same image give
PaddleDetection's raw outputs and detections (../shared/reference/conformance_r18_320_c3, see its README)."""
from __future__ import annotations

import json

import numpy as np
import paddle
import pytest

from tests.conftest import shared_path

FIXTURE = ("reference", "conformance_r18_320_c3")


@pytest.fixture(scope="module")
def conformance():
    root = shared_path(*FIXTURE)
    from toolbox.models import build_model, load_weights

    model = build_model("RT-DETR-R18", num_classes=3, input_size=320)
    report = load_weights(model, str(root / "weights.pdparams"))
    model.eval()
    size = json.loads((root / "orig_size.json").read_text())
    return {
        "model": model,
        "report": report,
        "image": paddle.to_tensor(np.load(root / "image.npy")),
        "wh": paddle.to_tensor([[size["w"], size["h"]]], dtype="int64"),
        "size": size,
        "raw_logits": np.load(root / "raw_logits.npy"),
        "raw_boxes": np.load(root / "raw_boxes.npy"),
        "bbox": np.load(root / "bbox.npy"),
    }


def _reference_top20(c):
    """PaddleDetection's top-20 rows (class, score, x1, y1, x2, y2), boxes clipped as ours are."""
    ref = c["bbox"][:20].copy()
    ref[:, [2, 4]] = ref[:, [2, 4]].clip(0, c["size"]["w"])
    ref[:, [3, 5]] = ref[:, [3, 5]].clip(0, c["size"]["h"])
    return ref


def _check_detections(labels, boxes, scores, c):
    ref = _reference_top20(c)
    np.testing.assert_array_equal(labels[0, :20], ref[:, 0].astype("int64"))
    np.testing.assert_allclose(scores[0, :20], ref[:, 1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes[0, :20], ref[:, 2:], atol=1e-2, rtol=0)


def test_every_tensor_of_the_checkpoint_loads(conformance):
    report = conformance["report"]
    assert not report["missing"] and not report["unexpected"] and report["loaded"] == 464


def test_raw_outputs_match_paddledetection(conformance):
    c = conformance
    with paddle.no_grad():
        out = c["model"](c["image"])
    logits, boxes = out["pred_logits"].numpy(), out["pred_boxes"].numpy()
    assert logits.shape == (1, 300, 3) and boxes.shape == (1, 300, 4)
    np.testing.assert_allclose(logits, c["raw_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, c["raw_boxes"], atol=1e-4, rtol=0)


def test_top20_detections_match_in_order(conformance):
    from toolbox.models import postprocess

    c = conformance
    with paddle.no_grad():
        out = c["model"](c["image"])
        labels, boxes, scores = postprocess(out["pred_logits"], out["pred_boxes"], c["wh"])
    assert labels.shape == [1, 300] and boxes.shape == [1, 300, 4] and scores.shape == [1, 300]
    _check_detections(labels.numpy(), boxes.numpy(), scores.numpy(), c)


def test_deploy_model_and_the_three_stages_give_the_same_detections(conformance):
    from toolbox.models import DeployModel

    c = conformance
    model = c["model"]
    with paddle.no_grad():
        labels, boxes, scores = DeployModel(model)(c["image"], c["wh"])
        assert labels.dtype == paddle.int64 and boxes.dtype == paddle.float32 and scores.dtype == paddle.float32
        _check_detections(labels.numpy(), boxes.numpy(), scores.numpy(), c)

        # The stages export splits the graph at, chained by hand.
        tr = model.transformer
        memory, output_memory, enc_logits, enc_coords, shapes = tr.encode(model.extract(c["image"]))
        assert shapes == [(40, 40), (20, 20), (10, 10)] and memory.shape == [1, 2100, 256]
        target, ref_unact, _, topk_index = tr.select_queries(output_memory, enc_logits, enc_coords)
        assert target.shape == [1, 300, 256] and ref_unact.shape == [1, 300, 4] and topk_index.shape == [1, 300]
        dec_boxes, dec_logits = tr.decode(target, ref_unact, memory, shapes)
    np.testing.assert_allclose(dec_logits[-1].numpy(), c["raw_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(dec_boxes[-1].numpy(), c["raw_boxes"], atol=1e-4, rtol=0)
