"""RF-DETR export (toolbox/rfdetr/export.py): the contract's ONNX I/O, its check against PyTorch, the dispatch.

The run is rfcore's `rfdetr_run` (RF-DETR-N from scratch, 64 px, a few steps; tests/rfdetr_support.py); the
full-size test exports RF-DETR-N at its default 384 with a seeded class head (toolbox/rfdetr/seeded.py).
The model hubs are offline (tests/conftest.py), so a hidden download fails these tests.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.rfdetr_support import RF_RUN, RF_SIZE

pytestmark = pytest.mark.usefixtures("needs_rfdetr")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolbox", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _val_images(ws, n: int = 3):
    from toolbox.export.runtime import load_image

    d = ws.dataset_dir("tiny")
    ann = json.loads((d / "annotations" / "instance_val.json").read_text(encoding="utf-8"))
    return [load_image(d / "images" / im["file_name"]) for im in ann["images"][:n]]


@pytest.fixture(scope="module")
def run_export(rfdetr_run, session_workspace):
    """`python -m toolbox export --run <the RF-DETR run>` with the CLI's defaults (formats: RF-DETR's onnx)."""
    r = _cli("export", "--run", RF_RUN, "--name", "rf-run", "--workspace", str(session_workspace.root))
    assert r.returncode == 0, r.stderr[-3000:]
    return session_workspace.exports / "rf-run"


def test_run_export_has_the_contract_io_and_files(run_export, rfdetr_run):
    import onnx
    import yaml

    assert sorted(p.name for p in run_export.iterdir()) == sorted(
        ["model.onnx", "infer_cfg.yml", "infer_cfg.json", "labels.txt", "export_report.json", "events.jsonl",
         "export.log"])
    g = onnx.load(str(run_export / "model.onnx")).graph

    def sig(values):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_value if d.HasField("dim_value") else "N" for d in v.type.tensor_type.shape.dim])
                for v in values]

    F, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    assert sig(g.input) == [("images", F, ["N", 3, RF_SIZE, RF_SIZE]), ("orig_target_sizes", I64, ["N", 2])]
    assert sig(g.output) == [("labels", I64, ["N", 300]), ("boxes", F, ["N", 300, 4]), ("scores", F, ["N", 300])]
    cfg = yaml.safe_load((run_export / "infer_cfg.yml").read_text(encoding="utf-8"))
    run_cfg = yaml.safe_load((rfdetr_run / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["arch"] == "RF-DETR" and cfg["model_name"] == "RF-DETR-N"
    assert cfg["label_list"] == run_cfg["model"]["label_list"]
    assert (run_export / "labels.txt").read_text(encoding="utf-8").split("\n")[:-1] == cfg["label_list"]
    assert cfg["preprocess"] == [
        {"Resize": {"target_size": [RF_SIZE, RF_SIZE], "keep_ratio": False, "interp": "linear"}},
        {"Normalize": {"scale": 1 / 255, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}},
        {"Permute": {"from": "HWC", "to": "CHW"}}]
    assert json.loads((run_export / "infer_cfg.json").read_text(encoding="utf-8")) == cfg
    assert [s["format"] for s in cfg["stages"]] == ["onnx"]
    report = json.loads((run_export / "export_report.json").read_text(encoding="utf-8"))
    onnx_rep = report["formats"]["onnx"]
    assert report["ok"] and onnx_rep["passed"] and report["source"]["backend"] == "rfdetr"
    assert report["source"]["weights"].endswith("checkpoints/best/model.pth")
    # the raw tolerance stays the RT-DETR export's 1e-4 unless the model's own floor is higher; a wrong
    # operator moves logits by 1e-2..1, so anything near that would make the check meaningless
    assert onnx_rep["check"]["raw_atol"] < 1e-3
    assert onnx_rep["check"]["raw_comparison"]["strict_images"], "no image was compared slot by slot"
    assert onnx_rep["check"]["detections"]["compared"] >= 40 and onnx_rep["check"]["detections"]["ok"]
    assert onnx_rep["grid_sample"] >= 1, "the deformable attention's GridSample is in the graph"
    events = [json.loads(line) for line in (run_export / "events.jsonl").read_text().splitlines()]
    assert events[-1]["status"] == "ok"


def test_onnx_equals_rfdetr_postprocess_on_predict_inputs(run_export, rfdetr_run, session_workspace):
    """model.onnx on toolbox.rfdetr.predict's pre-processing (rfdetr's own: torchvision bilinear on [0,1]
    floats) gives what the eval-mode model + rfdetr's PostProcess (foreground classes) give; labels index
    label_list. The run's 3-step model regresses some boxes with a negative width: rfdetr's box conversion
    counts it as 0, and the graph must too."""
    import onnxruntime as ort
    import torch

    from toolbox.export import compare
    from toolbox.rfdetr.onnx_wrap import reference_detections
    from toolbox.rfdetr.predict import load_for_inference, preprocess

    net, labels, size, _, _ = load_for_inference(run=RF_RUN, model=None, weights="best",
                                                 workspace=session_workspace)
    images = _val_images(session_workspace)
    x = preprocess(images, size)
    sizes = torch.tensor([[im.shape[1], im.shape[0]] for im in images], dtype=torch.int64)
    ref, _ = reference_detections(net, x, sizes, len(labels))
    sess = ort.InferenceSession(str(run_export / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy(), "orig_target_sizes": sizes.numpy()})
    assert got[0].dtype == np.int64 and 0 <= got[0].min() and got[0].max() < len(labels)
    assert np.all(got[1][..., 2:] >= got[1][..., :2]), "x2 >= x1 and y2 >= y1 for every box"
    for i in range(len(images)):
        st = compare.match_detections(tuple(r[i] for r in ref), tuple(g[i] for g in got), top=50,
                                      **compare.FP32_MATCH)
        assert st.ok, (i, st)


def test_paddle_and_int8_formats_are_refused_clearly(rfdetr_run, session_workspace):
    from toolbox import errors
    from toolbox.export.api import export

    with pytest.raises(errors.UsageError, match="RF-DETR exports to ONNX; the Paddle format is for the RT-DETR"):
        export(run=RF_RUN, formats="paddle,onnx", workspace=session_workspace, progress=False)
    with pytest.raises(errors.UsageError, match="onnx-int8 is for the RT-DETR family"):
        export(run=RF_RUN, formats="onnx-int8", workspace=session_workspace, progress=False)
    r = _cli("export", "--run", RF_RUN, "--formats", "paddle", "--workspace", str(session_workspace.root))
    assert r.returncode == 2 and "the Paddle format is for the RT-DETR family" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (session_workspace.exports / RF_RUN).exists()


def test_model_and_weights_dispatch(rfdetr_run, session_workspace):
    """--model RF-DETR-N --weights X.pth --num-classes N reaches the RF-DETR export; a wrong class count is
    an input error naming the checkpoint, not a traceback."""
    from toolbox.export.source import resolve_source

    pth = rfdetr_run / "checkpoints" / "last" / "model.pth"
    src = resolve_source(session_workspace, run=None, weights=str(pth), model="RF-DETR-N", num_classes=3,
                         labels=None, input_size=RF_SIZE)
    assert (src.backend, src.arch, src.input_size, src.weights) == ("rfdetr", "RF-DETR", RF_SIZE, str(pth))
    r = _cli("export", "--model", "RF-DETR-N", "--weights", str(pth), "--num-classes", "5", "--input-size",
             str(RF_SIZE), "--workspace", str(session_workspace.root))
    assert r.returncode == 1, r.stderr[-2000:]   # InputError: the weights do not fit what was asked
    assert "does not fit RF-DETR-N with 5 classes" in r.stderr and "Traceback" not in r.stderr


def test_another_input_size_than_trained_is_a_usage_error(rfdetr_run, session_workspace):
    from toolbox import errors
    from toolbox.export.api import export

    with pytest.raises(errors.UsageError, match=rf"trained at {RF_SIZE} px .* --input-size {RF_SIZE}"):
        export(run=RF_RUN, input_size=2 * RF_SIZE, name="rf-size", workspace=session_workspace, progress=False)


def test_a_wrong_graph_fails_the_check_with_exit_3(rfdetr_run, session_workspace, monkeypatch):
    """Fault injection: post-processing that shifts every label by one is traced into the graph; the check
    must refuse it (exit 3), keep exports/<name>.failed/ with the report, and publish nothing."""
    from toolbox import errors
    from toolbox.export.api import export
    from toolbox.rfdetr import onnx_wrap

    real = onnx_wrap.postprocess

    def shifted(*args, **kwargs):
        labels, boxes, scores = real(*args, **kwargs)
        return (labels + 1) % args[3], boxes, scores

    monkeypatch.setattr(onnx_wrap, "postprocess", shifted)
    with pytest.raises(errors.RuntimeFailure, match="ONNX parity failed") as exc:
        export(run=RF_RUN, name="rf-broken", workspace=session_workspace, progress=False)
    assert exc.value.exit_code == 3
    failed = session_workspace.exports / "rf-broken.failed"
    report = json.loads((failed / "export_report.json").read_text(encoding="utf-8"))
    assert report["ok"] is False and report["formats"]["onnx"]["passed"] is False
    dets = report["formats"]["onnx"]["check"]["detections"]
    # shifted labels leave a detection matched only where another query of the shifted class has the same box
    # and score (the 3-step model's degenerate boxes): a handful, never most
    assert dets["matched"] < dets["compared"] / 2, dets
    assert not (session_workspace.exports / "rf-broken").exists()


def test_deploy_of_an_export_without_rknn_says_so(run_export, tmp_path):
    from toolbox import errors
    from toolbox.deploy.api import deploy

    with pytest.raises(errors.InputError, match=r"has no RKNN model for rk3588-cpp.*--formats onnx,rknn"):
        deploy(run_export, target="rk3588-cpp", out=tmp_path, fetch=False)


# ------------------------------------------------------------------------------ the raw comparison itself
def _raw(seed=0, n=2, q=300, c=4):
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0.05, 0.95, (n, q, 4))
    logits = rng.normal(0, 3, (n, q, c))
    return logits, boxes


def test_compare_raw_strict_when_proposal_ranks_hold():
    from toolbox.rfdetr.export import compare_raw

    logits, boxes = _raw()
    out = compare_raw(logits, boxes, logits + 3e-5, boxes + 2e-6, atol=1e-4, boundary=6)
    assert out["ok"] and out["strict_images"] == [0, 1] and out["pred_logits"] == pytest.approx(3e-5)
    # a wrong operator (every logit off by 1e-2) fails however the slots are paired
    assert not compare_raw(logits, boxes, logits + 1e-2, boxes, atol=1e-4, boundary=6)["ok"]


def test_compare_raw_rank_swap_needs_the_same_proposals_and_one_strict_image():
    from toolbox.rfdetr.export import compare_raw

    logits, boxes = _raw()
    cand_l, cand_b = logits.copy(), boxes.copy()
    cand_b[1, [100, 101]] = boxes[1, [101, 100]]              # image 1: two proposals traded ranks
    cand_l[1] += 3e-3                                          # ... and every query moved through self-attention
    out = compare_raw(logits, boxes, cand_l, cand_b, atol=1e-4, boundary=6)
    assert out["ok"] and out["strict_images"] == [0] and out["rank_swap_images"] == [1]
    assert out["moved_slots"] == [0, 2]
    other = cand_b.copy()
    other[1, 50] = [0.5, 0.5, 0.01, 0.01]                      # a proposal that the reference never selected
    assert not compare_raw(logits, boxes, cand_l, other, atol=1e-4, boundary=6)["ok"]
    both = cand_b.copy()
    both[0, [10, 11]] = boxes[0, [11, 10]]                     # every image swapped: nothing checked strictly
    assert not compare_raw(logits, boxes, cand_l, both, atol=1e-4, boundary=6)["ok"]


# --------------------------------------------------------------------------------------------- full size
@pytest.mark.slow
def test_full_size_nano_export_passes_its_check(tmp_path):
    """RF-DETR-N at its default 384 (random init, class head seeded so scores spread), exported with the
    check, ONNX and RKNN; the ONNX graph runs with any batch size, and rknn-toolkit2 converts the full-size
    graph in one attempt (RF_DISABLE_RULES), GridSample and TopK on the board's CPU, its simulator
    matching onnxruntime (66 of 80 detections here; FP16_MIN_MATCHED is 80 %)."""
    import onnxruntime as ort

    from toolbox.export.api import export
    from toolbox.export.runtime import load_image
    from toolbox.rfdetr.seeded import write_seeded_checkpoint
    from toolbox.workspace import Workspace

    weights, samples = write_seeded_checkpoint("RF-DETR-N", tmp_path / "seed", num_classes=3)
    out = export(model="RF-DETR-N", weights=str(weights), num_classes=3, samples=samples, formats="onnx,rknn",
                 workspace=Workspace(tmp_path / "ws").ensure(), progress=False)
    report = json.loads((out / "export_report.json").read_text(encoding="utf-8"))
    rk = report["formats"]["rknn"]
    assert rk["converted"] and rk["passed"] and rk["attempts"] == 1, {k: rk.get(k) for k in ("reason", "attempts")}
    assert {"GridSample", "TopK"} <= set(rk["cpu_ops"]) and rk["check"]["detections"]["compared"] == 80
    assert (out / "rknn" / "model_rk3588_fp16.rknn").stat().st_size > 1_000_000
    check = report["formats"]["onnx"]["check"]
    assert report["ok"] and report["source"]["input_size"] == 384
    assert check["raw_atol"] < 1e-3 and check["raw_comparison"]["strict_images"]
    assert check["detections"]["ok"] and check["detections"]["compared"] == 80
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    from toolbox.export.runtime import Predictor

    pred = Predictor(out)
    images = [load_image(p) for p in samples[:3]]
    x, sizes = zip(*(pred.preprocess(im) for im in images))
    x, sizes = np.stack(x), np.stack(sizes)
    batch = sess.run(None, {"images": x, "orig_target_sizes": sizes})
    one = sess.run(None, {"images": x[1:2], "orig_target_sizes": sizes[1:2]})
    assert batch[2].max() > 0.5, "seeded scores are informative (best detection above 0.5)"
    np.testing.assert_array_equal(one[0][0][:20], batch[0][1][:20])
    np.testing.assert_allclose(one[1][0], batch[1][1], atol=1e-3)  # batch-1 vs batch-3 kernels: float reassociation
