"""Weights trained elsewhere: PaddleDetection's RT-DETR-R18 checkpoint (../shared conformance fixture,
3 classes) exported with `export --model RT-DETR-R18 --weights ... --num-classes 3 --labels FILE`; the
ONNX graph must reproduce PaddleDetection's own outputs on the fixture's image."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_path

pytestmark = pytest.mark.slow


def test_paddledetection_checkpoint_exports_and_matches_its_outputs(tmp_path, capsys):
    from toolbox.cli import main
    from toolbox.export.onnx import session

    ref = shared_path("reference", "conformance_r18_320_c3")
    labels = tmp_path / "labels.txt"
    labels.write_text("Platelets\nRBC\nWBC\n", encoding="utf-8")
    ws = tmp_path / "ws"
    code = main(["--workspace", str(ws), "export", "--model", "RT-DETR-R18", "--weights", str(ref / "weights.pdparams"),
                 "--num-classes", "3", "--labels", str(labels), "--input-size", "320", "--formats", "onnx",
                 "--name", "r18-conformance"])
    assert code == 0, capsys.readouterr().err
    d = ws / "exports" / "r18-conformance"
    assert (d / "labels.txt").read_text(encoding="utf-8").split() == ["Platelets", "RBC", "WBC"]
    rep = json.loads((d / "export_report.json").read_text())
    assert rep["ok"] and rep["source"]["model"] == "RT-DETR-R18" and rep["formats"]["onnx"]["passed"]
    assert not (d / "paddle").exists()  # onnx only: the Paddle program was an intermediate

    x = np.load(ref / "image.npy")
    meta = json.loads((ref / "orig_size.json").read_text())
    sizes = np.array([[meta["w"], meta["h"]]], np.int64)
    out_labels, out_boxes, out_scores = session(d / "model.onnx").run(None, {"images": x, "orig_target_sizes": sizes})
    bbox = np.load(ref / "bbox.npy")  # [300, 6]: class, score, x1, y1, x2, y2 (PaddleDetection, not clipped)
    top = 20
    np.testing.assert_array_equal(out_labels[0, :top], bbox[:top, 0].astype(np.int64))
    np.testing.assert_allclose(out_scores[0, :top], bbox[:top, 1], atol=1e-4)
    clipped = np.clip(bbox[:top, 2:], 0, [meta["w"], meta["h"], meta["w"], meta["h"]])
    np.testing.assert_allclose(out_boxes[0, :top], clipped, atol=1e-2)
