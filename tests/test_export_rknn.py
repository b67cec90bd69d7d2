"""RK3588 export of the tiny trained model (`tiny_export`): the graphs rknn-toolkit2 got hold no
GridSample/TopK, the stages chain, and the simulator matched onnxruntime; INT8 calibration; and a missing
rknn-toolkit2 reported with its install command (the module really hidden, in a child process)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _ops(path):
    import onnx

    ops = []

    def walk(g):
        for n in g.node:
            ops.append(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(onnx.load(str(path)).graph)
    return ops


def test_rknn_graphs_hold_no_gridsample_and_no_topk(tiny_export):
    for name in ("encoder", "decoder"):
        ops = _ops(tiny_export / "rknn" / f"{name}.onnx")
        assert ops and "GridSample" not in ops and "TopK" not in ops, name
    assert "Gather" in _ops(tiny_export / "rknn" / "decoder.onnx")  # discrete sampling reads with gathers
    # the same model's full graph has both, so this inspection can fail
    full = _ops(tiny_export / "model.onnx")
    assert "GridSample" in full and "TopK" in full


def test_rknn_stages_chain_and_files_exist(tiny_export):
    cfg = json.loads((tiny_export / "infer_cfg.json").read_text(encoding="utf-8"))
    rk = [s for s in cfg["stages"] if s["format"] == "rknn"]
    assert [(s["name"], s["runtime"]) for s in rk] == [("encoder", "rknn"), ("select_queries", "cpu"),
                                                       ("decoder", "rknn"), ("postprocess", "cpu")]
    assert rk[0]["inputs"][0]["dtype"] == "uint8" and rk[0]["inputs"][0]["layout"] == "NHWC"
    have = {"images", "orig_target_sizes"}
    for s in rk:
        assert {i["name"] for i in s["inputs"]} <= have, s["name"]
        have |= {o["name"] for o in s["outputs"]}
        assert (tiny_export / s["file"]).stat().st_size > 0
    assert [o["name"] for o in rk[-1]["outputs"]] == ["labels", "boxes", "scores"]
    assert (tiny_export / "rknn" / "rtdetr_cpu.py").read_text() == (ROOT / "toolbox/export/rtdetr_cpu.py").read_text()


def test_simulator_matched_onnxruntime_within_tolerance(tiny_export):
    rep = json.loads((tiny_export / "export_report.json").read_text())
    rk = rep["formats"]["rknn"]
    assert rk["passed"] and rk["quant"] == "fp16"
    sim = rk["check"]["simulator_vs_onnx"]
    assert sim["compared"] >= 4 and sim["matched"] == sim["compared"]
    assert sim["min_iou"] >= 0.9 and sim["max_score_diff"] <= 0.05
    assert rk["check"]["split_vs_paddle"]["ok"]
    assert {w["runs_on"] for w in rk["ops_where"]} == {"NPU", "CPU"}
    cost = rep["sampling_cost"]
    assert cost["trained_sampling"] == "grid" and cost["val"]["images"] > 0
    assert "AP" in cost["val"]["grid"] and "AP" in cost["val"]["discrete"]


def test_split_runs_on_cpu_like_the_board_would(tiny_export, session_workspace):
    """The rknn stages run with onnxruntime for the NPU parts (their rknn_input graphs) and rtdetr_cpu."""
    from toolbox.export.runtime import Predictor, load_image

    img = load_image(sorted((session_workspace.dataset_dir("tiny") / "images").glob("val_*.jpg"))[0])
    out = Predictor(tiny_export, "rknn-onnx").predict([img])[0]
    assert out["labels"].shape == (300,) and np.all(np.diff(out["scores"]) <= 0)
    assert out["boxes"][:, 2].max() <= img.shape[1] and out["boxes"][:, 3].max() <= img.shape[0]


def test_int8_encoder_with_calibration_list(tiny_run, session_workspace):
    from toolbox.export.api import export

    d = export(run=tiny_run.name, formats="rknn", rknn_quant="int8", calib_size=4, name="tiny-int8",
               workspace=session_workspace, progress=False)
    lines = (d / "rknn" / "dataset.txt").read_text().split()
    assert len(lines) == 4 and all((d / "rknn" / p).is_file() for p in lines)
    rep = json.loads((d / "export_report.json").read_text())
    assert rep["calibration"]["from"] == "train split"
    assert all("/train_" in s or "train" in s for s in rep["calibration"]["sources"])
    assert (d / "rknn" / "encoder_rk3588_int8.rknn").is_file() and (d / "rknn" / "decoder_rk3588_fp16.rknn").is_file()
    sim = rep["formats"]["rknn"]["check"]["simulator_vs_onnx"]
    assert rep["formats"]["rknn"]["passed"] and sim["ok"]  # a miss would have exited 3
    assert sim["compared"] > 0 and sim["matched"] >= 0.9 * sim["compared"] and sim["flip_eps"] > 0
    assert not (d / "model.onnx").exists() and not (d / "paddle").exists()  # only what was asked for


HIDE_RKNN = textwrap.dedent("""
    import sys
    class _NoRknn:
        def find_spec(self, name, path=None, target=None):
            if name == "rknn" or name.startswith("rknn."):
                raise ModuleNotFoundError("No module named 'rknn'", name="rknn")
            return None
    sys.meta_path.insert(0, _NoRknn())
    from toolbox.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_missing_rknn_toolkit_names_the_install_command(tiny_run, session_workspace):
    r = subprocess.run([sys.executable, "-c", HIDE_RKNN, "--workspace", str(session_workspace.root), "export",
                        "--run", tiny_run.name, "--formats", "onnx,rknn", "--name", "no-rknn"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    assert "rknn-toolkit2 is not installed" in r.stderr and "pip install --no-deps rknn-toolkit2==2.5.0" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (session_workspace.exports / "no-rknn").exists()
