"""A tiny trained model exported to Paddle + ONNX (the `tiny_export_onnx` fixture): files of the
contract, checks recorded, and the parity re-checked here independently of the export's own check."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # needs the session's tiny training run


def _val_images(ws, n=3):
    from toolbox.export.runtime import load_image

    paths = sorted((ws.dataset_dir("tiny") / "images").glob("val_*.jpg"))[:n]
    return [load_image(p) for p in paths]


def test_export_folder_follows_the_contract(tiny_export_onnx, tiny_run):
    import yaml

    d = tiny_export_onnx
    for f in ("paddle/model.json", "paddle/model.pdiparams", "model.onnx", "infer_cfg.yml", "infer_cfg.json",
              "labels.txt", "export_report.json", "events.jsonl"):
        assert (d / f).is_file() and (d / f).stat().st_size > 0, f
    assert not list(d.glob(".work*")) and not list(d.parent.glob(".tiny-onnx.*"))  # no leftovers
    run_cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    labels = (d / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == run_cfg["model"]["label_list"]
    cfg = yaml.safe_load((d / "infer_cfg.yml").read_text(encoding="utf-8"))
    assert cfg == json.loads((d / "infer_cfg.json").read_text(encoding="utf-8"))
    assert cfg["schema_version"] == 1 and cfg["model_name"] == "tiny-test" and cfg["input_size"] == 128
    assert cfg["label_list"] == labels and cfg["num_classes"] == len(labels)
    assert [i["name"] for i in cfg["io"]["inputs"]] == ["images", "orig_target_sizes"]
    assert [(o["name"], o["dtype"]) for o in cfg["io"]["outputs"]] == [("labels", "int64"), ("boxes", "float32"),
                                                                      ("scores", "float32")]
    assert [(s["format"], s["runtime"]) for s in cfg["stages"]] == [("paddle", "paddle"), ("onnx", "onnxruntime")]
    events = [json.loads(line) for line in (d / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "end" and events[-1]["exit_code"] == 0


def test_report_records_each_check(tiny_export_onnx):
    rep = json.loads((tiny_export_onnx / "export_report.json").read_text())
    assert rep["ok"] and rep["schema_version"] == 1
    assert rep["formats"]["paddle"]["passed"] and rep["formats"]["onnx"]["passed"]
    raw = rep["formats"]["onnx"]["check"]["raw_max_abs_diff"]
    assert raw["pred_logits"] <= 1e-4 and raw["pred_boxes"] <= 1e-4
    pairing = rep["formats"]["onnx"]["check"]["raw_pairing"]
    assert pairing["ok"] and pairing["unpaired_inside"] == 0
    # the well-conditioned tiny model's own rounding floor (~1e-6) is far below 1e-4: the base tolerance holds
    check = rep["formats"]["onnx"]["check"]
    assert 0 < check["raw_noise_floor"] < 1e-5 and check["raw_atol"] == 1e-4
    det = rep["formats"]["onnx"]["check"]["detections"]
    assert det["compared"] > 0 and det["matched"] == det["compared"]
    assert "orig_target_sizes" in rep["io_convention"]["inputs"]
    assert rep["formats"]["onnx"]["grid_sample"] > 0  # tiny-test samples with grid_sample: opset 16 needed
    # the graphs come from the export form (fuse.py), checked above against the model as trained
    assert rep["graph_fusion"]["repvgg_blocks"] > 0 and rep["graph_fusion"]["batch_norms_left"] == 0


def test_onnx_graph_signature_and_dynamic_batch(tiny_export_onnx):
    import onnx

    from toolbox.export.runtime import Predictor

    m = onnx.load(str(tiny_export_onnx / "model.onnx"))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 16
    ins = {i.name: i for i in m.graph.input}
    assert list(ins) == ["images", "orig_target_sizes"]
    assert ins["images"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert ins["orig_target_sizes"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in ins["images"].type.tensor_type.shape.dim] == ["N", 3, 128, 128]
    assert [o.name for o in m.graph.output] == ["labels", "boxes", "scores"]

    p = Predictor(tiny_export_onnx, "onnxruntime")
    x = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    sizes = np.array([[160, 120], [100, 160], [64, 64]], np.int64)
    batch = p.run_arrays(x, sizes)
    one = p.run_arrays(x[1:2], sizes[1:2])
    assert batch["labels"].shape == (3, 300) and batch["boxes"].shape == (3, 300, 4)
    np.testing.assert_allclose(batch["scores"][1], one["scores"][0], atol=1e-5)
    assert batch["boxes"][2].max() <= 64 and batch["boxes"].min() >= 0


def test_paddle_inference_and_onnx_agree_with_the_trained_model(tiny_export_onnx, tiny_seeded_weights,
                                                                session_workspace):
    """Independent of the export's own check: the exported weights in eval mode (dygraph) vs both runtimes."""
    import paddle

    from toolbox.export.compare import match_detections
    from toolbox.export.runtime import Predictor
    from toolbox.models import DeployModel, build_model, load_weights

    images = _val_images(session_workspace)
    onnx_p = Predictor(tiny_export_onnx, "onnxruntime")
    paddle_p = Predictor(tiny_export_onnx, "paddle")
    model = build_model("tiny-test", 3)
    load_weights(model, tiny_seeded_weights)
    model.eval()
    deploy = DeployModel(model)
    pre = [onnx_p.preprocess(im) for im in images]
    with paddle.no_grad():
        ref = [t.numpy() for t in deploy(paddle.to_tensor(np.stack([a for a, _ in pre])),
                                         paddle.to_tensor(np.stack([s for _, s in pre])))]
    for name, got in (("onnxruntime", onnx_p.predict(images)), ("paddle", paddle_p.predict(images))):
        for i, g in enumerate(got):
            stats = match_detections(tuple(r[i] for r in ref), (g["labels"], g["boxes"], g["scores"]),
                                     iou_min=0.99, score_tol=1e-4)
            assert stats.ok, (name, i, stats)


def test_failed_parity_leaves_the_previous_export_and_a_failed_folder(tiny_run, session_workspace, monkeypatch):
    """An export whose ONNX check fails exits 3, keeps the good export in place and writes <name>.failed/."""
    from toolbox.errors import RuntimeFailure
    from toolbox.export import api, onnx_export

    monkeypatch.setattr(onnx_export, "RAW_ATOL", -1.0)  # no real graph can pass: the check itself is what is tested
    monkeypatch.setattr(onnx_export, "RAW_FLOOR_FACTOR", -1.0)
    before = sorted(p.name for p in session_workspace.exports.iterdir())
    with pytest.raises(RuntimeFailure, match="ONNX parity failed") as err:
        api.export(run=tiny_run.name, formats="onnx", name="tiny-parity", workspace=session_workspace, progress=False)
    assert err.value.exit_code == 3
    failed = session_workspace.exports / "tiny-parity.failed"
    rep = json.loads((failed / "export_report.json").read_text())
    assert rep["ok"] is False and "ONNX parity failed" in rep["error"]
    assert not (session_workspace.exports / "tiny-parity").exists()
    after = sorted(p.name for p in session_workspace.exports.iterdir())
    assert set(after) - set(before) == {"tiny-parity.failed"}


def test_fp16_onnx_has_half_weights_and_matches_fp32(tiny_export, session_workspace):
    import onnx

    from toolbox.export.compare import match_detections
    from toolbox.export.runtime import Predictor

    m = onnx.load(str(tiny_export / "model_fp16.onnx"))
    kinds = [i.data_type for i in m.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert kinds.count(onnx.TensorProto.FLOAT16) > 0.8 * len(kinds)  # weights really are half precision
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64]
    rep = json.loads((tiny_export / "export_report.json").read_text())
    assert rep["formats"]["onnx_fp16"]["passed"]
    images = _val_images(session_workspace)
    full = Predictor(tiny_export, "onnxruntime").predict(images)
    half = Predictor(tiny_export, "onnxruntime-fp16").predict(images)
    matched = compared = 0
    for a, b in zip(full, half):
        stats = match_detections((a["labels"], a["boxes"], a["scores"]), (b["labels"], b["boxes"], b["scores"]))
        matched, compared = matched + stats.matched, compared + stats.compared
    assert compared and matched >= 0.8 * compared  # the rest: near-tied query selections of a 1-epoch model
