"""The resize interpolation comes from the model's `preprocess` (RT-DETR bicubic, RT-DETRv2 bilinear as
PaddleDetection's readers): training's evaluation and predict use the model config's, the Python and C++
SDK demos read infer_cfg's Resize `interp` (and fail clearly on one they do not know)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import require, require_tool
from toolbox.data import transforms as T

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "toolbox" / "deploy" / "templates"


def _image(h=97, w=131, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_models_carry_their_interpolation():
    from toolbox.models import build_model

    assert T.model_interpolation(build_model("tiny-test", 3)) == cv2.INTER_CUBIC
    assert T.model_interpolation(build_model("RT-DETRv2-R18", 3, input_size=128)) == cv2.INTER_LINEAR
    assert T.interpolation("linear") == cv2.INTER_LINEAR and T.interpolation(1) == cv2.INTER_LINEAR
    with pytest.raises(ValueError, match="unknown resize interpolation 'bicubicc'"):
        T.interpolation("bicubicc")
    img = _image()
    linear = T.collate_eval([{"image": img, "orig_size": (131, 97), "image_id": 1}], 64, cv2.INTER_LINEAR)[0][0]
    want = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_allclose(linear, want, atol=1e-7)
    cubic = T.collate_eval([{"image": img, "orig_size": (131, 97), "image_id": 1}], 64)[0][0]
    assert np.abs(cubic - linear).max() > 0.01  # the two really differ on a noisy image


def _python_demo():
    """The SDK's demo.py as a module (its rtdetr_cpu import is the export's file, which the SDK copies)."""
    sys.modules.setdefault("rtdetr_cpu", importlib.import_module("toolbox.export.rtdetr_cpu"))
    spec = importlib.util.spec_from_file_location("sdk_demo_under_test", TEMPLATES / "python" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _infer_cfg(tmp_path, interp):
    cfg = {"input_size": 64, "label_list": ["a"], "preprocess": [
        {"Resize": {"target_size": [64, 64], "keep_ratio": False, "interp": interp}},
        {"Normalize": {"scale": 1 / 255, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}},
        {"Permute": {}}]}
    (tmp_path / "infer_cfg.json").write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.parametrize("interp, flag", [("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC)])
def test_python_demo_reads_interpolation_and_normalisation(tmp_path, interp, flag):
    demo = _python_demo()
    cfg = demo.load_config(_infer_cfg(tmp_path, interp))
    img = _image()
    x = demo.preprocess(img, cfg)["images"][0]
    want = (cv2.resize(img, (64, 64), interpolation=flag).astype(np.float32) / 255 - [0.1, 0.2, 0.3]) / 0.5
    np.testing.assert_allclose(x, want.transpose(2, 0, 1), atol=1e-5)
    with pytest.raises(SystemExit, match="interp 'bicubicc' is not one of"):
        demo.load_config(_infer_cfg(tmp_path, "bicubicc"))


def test_cpp_resizes_match_opencv(tmp_path):
    from toolbox.deploy.runtimes import ensure_helpers

    gxx = require_tool("g++", "apt-get install g++")
    try:
        helpers = ensure_helpers(fetch=False) / "include"
    except Exception as e:  # noqa: BLE001 - the cache is filled by `python -m toolbox runtimes fetch`
        require(False, f"C++ helper headers: {e}")
    main = tmp_path / "main.cpp"
    main.write_text(r'''
#include "common.hpp"
#include <cstdio>
#include <fstream>
int main(int argc, char** argv) {
    sdk::Image img; img.w = 131; img.h = 97; img.rgb.resize(131 * 97 * 3);
    std::ifstream in(argv[1], std::ios::binary); in.read(reinterpret_cast<char*>(img.rgb.data()), img.rgb.size());
    for (const char* interp : {"linear", "cubic"}) {
        sdk::Image r = sdk::resize(img, 64, 48, interp);
        std::ofstream out(std::string(argv[2]) + "." + interp, std::ios::binary);
        out.write(reinterpret_cast<const char*>(r.rgb.data()), r.rgb.size());
    }
    try { sdk::load_config(argv[3]); return 3; } catch (const std::exception& e) { std::puts(e.what()); }
    return 0;
}
''')
    src = TEMPLATES / "cpp" / "src"
    exe = tmp_path / "resize_check"
    subprocess.run([gxx, "-std=c++17", "-O1", "-I", str(src), "-I", str(helpers), str(main), str(src / "common.cpp"),
                    str(src / "stb_impl.cpp"), "-o", str(exe)], check=True, capture_output=True)
    img = _image()
    (tmp_path / "in.raw").write_bytes(img.tobytes())
    (tmp_path / "cfg").mkdir()
    bad = _infer_cfg(tmp_path / "cfg", "bicubicc")
    run = subprocess.run([str(exe), str(tmp_path / "in.raw"), str(tmp_path / "out"), str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "interp 'bicubicc' is not supported" in run.stdout, run.stdout + run.stderr
    for interp, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC)):
        got = np.frombuffer((tmp_path / f"out.{interp}").read_bytes(), np.uint8).reshape(48, 64, 3).astype(int)
        want = cv2.resize(img, (64, 48), interpolation=flag).astype(int)
        # OpenCV computes uint8 resizes in fixed point (11-bit weights for linear): one grey level apart at most
        assert np.abs(got - want).max() <= 1, interp
