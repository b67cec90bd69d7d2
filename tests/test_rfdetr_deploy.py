"""RF-DETR exports through `deploy`: all 10 SDK targets, and the demos' detections vs the PyTorch model's.

The export is RF-DETR-N at 128 px, random-initialised (nothing downloaded) with its class head seeded
(toolbox/rfdetr/seeded.py: an untrained or 3-step model scores everything ~0.01, so a comparison above a
threshold would prove nothing; rfcore's 64 px run cannot be used at 128: its DINOv2 position embeddings are
sized to the training resolution), exported with formats onnx and rknn (rknn-toolkit2 converts the graph with GridSample
and TopK on the CPU). The demos run with this interpreter (onnxruntime, OpenCV, numpy, PyYAML are all the
demo needs); the fresh-venv and qemu runs of tests/test_deploy_python.py are not repeated for RF-DETR: the
demo code is the same, only infer_cfg differs. The linux-cpu-cpp demo is built with its zip's build.sh and
run too (the C++ side of "the demos read mean/std/interp from infer_cfg").
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fixtures.deploy import assert_same_detections, demo_boxes, extract_zip

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_rfdetr")]

SIZE = 128      # 4 x RF-DETR-N's multiple: 64 encoder positions, enough for detections that spread


@pytest.fixture(scope="module")
def rf_export(session_workspace, tmp_path_factory):
    """(export folder, seeded weights): RF-DETR-N from scratch, class head seeded, exported onnx,rknn."""
    from tests.conftest import require
    from toolbox.export.api import export
    from toolbox.rfdetr.seeded import write_seeded_checkpoint

    try:
        import rknn.api  # noqa: F401
    except ImportError as e:
        require(False, f"rknn-toolkit2 is not importable ({e}); install with bash scripts/setup.sh")
    weights, samples = write_seeded_checkpoint("RF-DETR-N", tmp_path_factory.mktemp("rf_seed"), num_classes=3,
                                               input_size=SIZE)
    out = export(model="RF-DETR-N", weights=str(weights), num_classes=3, input_size=SIZE, samples=samples,
                 labels=["circle", "square", "猫"], formats="onnx,rknn", name="rf-seeded",
                 workspace=session_workspace, progress=False)
    return out, weights


@pytest.fixture(scope="module")
def rf_zips(rf_export, tmp_path_factory):
    from toolbox.deploy.api import deploy

    out = tmp_path_factory.mktemp("rf_sdk")
    paths = deploy(rf_export[0], target="all", out=out)
    return {p.name[len("rf-seeded-"):-4]: p for p in paths}


@pytest.fixture(scope="module")
def torch_reference(rf_export, rf_zips, tmp_path_factory):
    """The PyTorch model's predictions (toolbox.rfdetr.predict, eval mode) on the SDK's sample image, every box,
    with the comparison threshold (just below the 10th best score) and score tolerance of the RT-DETR tests."""
    from toolbox.export.runtime import load_image
    from toolbox.rfdetr.predict import TorchPredictor, load_for_inference
    from toolbox.workspace import Workspace

    root = extract_zip(rf_zips["linux-cpu-python"], tmp_path_factory.mktemp("rf_ref"))
    image = load_image(root / "images" / "sample.png")
    net, labels, size, _, _ = load_for_inference(run=None, model="RF-DETR-N", weights=str(rf_export[1]),
                                                 workspace=Workspace(tmp_path_factory.mktemp("ws")),
                                                 input_size=SIZE, label_list=["circle", "square", "猫"])
    lab, box, sc = (a[0] for a in TorchPredictor(net, labels, size)([image]))
    boxes = [{"cls_id": int(c), "score": float(s), "coordinate": [float(v) for v in b]} for c, b, s in zip(lab, box, sc)]
    scores = sorted((b["score"] for b in boxes), reverse=True)
    assert scores[0] > 0.5, f"the seeded model's best score {scores[0]} is not informative"
    tenth = scores[9]
    # the demos resize the uint8 image with OpenCV, predict resizes [0,1] floats with torchvision (both bilinear,
    # no antialias): ~1/255 per pixel apart, which moves scores by up to ~1e-2 here, hence at most 0.02
    tol = max(1e-3, min(0.02, 0.1 * tenth))
    return {"boxes": boxes, "threshold": max(tol + 1e-4, tenth - 1.5 * tol), "tol": tol}


def _demo(root, ref) -> list[dict]:
    r = subprocess.run([sys.executable, "demo.py", "images/sample.png", "--threshold",
                        f"{ref['threshold'] - ref['tol']:.6f}"], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return demo_boxes(r.stdout), r.stderr


def test_export_has_onnx_and_an_rknn_graph_with_its_cpu_operators(rf_export):
    import yaml

    out = rf_export[0]
    report = json.loads((out / "export_report.json").read_text(encoding="utf-8"))
    rk = report["formats"]["rknn"]
    assert report["ok"] and report["formats"]["onnx"]["passed"]
    assert rk["converted"] and rk["passed"], rk.get("reason")
    # the RK3588 NPU runs neither; rknn-toolkit2's layer table puts them on the CPU and the report says so
    assert rk["cpu_ops"].get("GridSample", 0) >= 1 and rk["cpu_ops"].get("TopK", 0) >= 1, rk["cpu_ops"]
    assert rk["npu_ops"], "some of the graph runs on the NPU"
    assert (out / "rknn" / "model_rk3588_fp16.rknn").stat().st_size > 1_000_000
    cfg = yaml.safe_load((out / "infer_cfg.yml").read_text(encoding="utf-8"))
    assert [(s["format"], s["runtime"]) for s in cfg["stages"]] == [("onnx", "onnxruntime"), ("rknn", "rknn"),
                                                                    ("rknn", "cpu")]


def test_deploy_builds_all_ten_targets(rf_zips):
    import zipfile

    from toolbox.deploy.targets import TARGETS

    assert sorted(rf_zips) == sorted(TARGETS)
    for target, path in rf_zips.items():
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            cfg_name = next(n for n in names if n.endswith("infer_cfg.json"))
            cfg = json.loads(z.read(cfg_name))
        norm = next(op["Normalize"] for op in cfg["preprocess"] if "Normalize" in op)
        assert norm["mean"] == [0.485, 0.456, 0.406] and norm["std"] == [0.229, 0.224, 0.225], target
        resize = next(op["Resize"] for op in cfg["preprocess"] if "Resize" in op)
        assert resize["interp"] == "linear", target
        if target.startswith("rk3588"):
            assert any(n.endswith("model_rk3588_fp16.rknn") for n in names), target
        else:
            assert any(n.endswith("model.onnx") for n in names), target


def test_linux_cpu_python_demo_matches_pytorch(rf_zips, torch_reference, tmp_path):
    root = extract_zip(rf_zips["linux-cpu-python"], tmp_path)
    got, _ = _demo(root, torch_reference)
    n = assert_same_detections(torch_reference["boxes"], got, torch_reference["threshold"],
                               tol=torch_reference["tol"], what="RF-DETR linux-cpu-python demo")
    assert n >= 5


def test_rk3588_python_demo_fallback_matches_pytorch(rf_zips, torch_reference, tmp_path):
    """Off the board RKNNLite is missing: the demo runs rknn_input.onnx with onnxruntime and the numpy
    post-processing stage, i.e. the RK3588 pipeline's own code path after the NPU graph."""
    root = extract_zip(rf_zips["rk3588-python"], tmp_path)
    got, err = _demo(root, torch_reference)
    assert "rknn-toolkit-lite2 is not installed" in err or "RKNN runtime unavailable" in err
    assert_same_detections(torch_reference["boxes"], got, torch_reference["threshold"], tol=torch_reference["tol"],
                           what="RF-DETR rk3588-python fallback")


def test_linux_cpu_cpp_demo_matches_pytorch(rf_zips, torch_reference, tmp_path):
    """The C++ demo reads the same infer_cfg (ImageNet mean/std, linear resize: src/common.cpp) and must find
    the PyTorch model's detections too; built with the zip's own build.sh against its ONNX Runtime kit."""
    from tests.conftest import require_tool

    require_tool("cmake")
    require_tool("g++")
    root = extract_zip(rf_zips["linux-cpu-cpp"], tmp_path)
    r = subprocess.run(["./build.sh"], cwd=root, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(["./build/demo", "images/sample.png", "--model-dir", "model", "--threshold",
                        f"{torch_reference['threshold'] - torch_reference['tol']:.6f}"], cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    n = assert_same_detections(torch_reference["boxes"], demo_boxes(r.stdout), torch_reference["threshold"],
                               tol=torch_reference["tol"], what="RF-DETR linux-cpu-cpp demo")
    assert n >= 5
