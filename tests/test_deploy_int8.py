"""CPU SDK zips that carry the INT8 model (`deploy --int8`, issue 16), run from their zips.

The four CPU targets are packed from the `tiny_export_int8` export with int8=True; each demo runs on the
sample image and its detections are compared with `python -m toolbox predict --export --backend
onnxruntime-int8` (the same model_int8.onnx) by IoU matching, as the FP32 kits are (test_deploy_*.py).

Tolerance: the FP32 kits' (predict_reference's score tolerance, IoU >= 0.9), plus up to 10 % unmatched
boxes for the C++ demos only. Why: the Python demo runs the toolbox's onnxruntime (1.26) like predict, so it
is held to the FP32 rule; the C++ kits bundle ONNX Runtime 1.31.1, whose INT8 kernels round requantised
sums on their own (QDQ fusion differs between versions), which moves INT8 scores by up to one quantization
step of the score head; near-tied scores of the one-epoch tiny model may then cross the comparison
threshold. A broken INT8 model (wrong scales, FP32 file shipped instead) moves far more than 10 % of boxes.
Python demos run with the toolbox's interpreter (the fresh-venv proof that the zip's requirements suffice is
test_deploy_python.py's; INT8 changes only the model file).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.fixtures.deploy import _predict_reference, assert_same_detections, demo_boxes, extract_zip

pytestmark = pytest.mark.slow
CPU_TARGETS = ("linux-cpu-python", "windows-cpu-python", "linux-cpu-cpp", "windows-cpu-cpp")
CPP_UNMATCHED = 0.10   # see the module docstring


@pytest.fixture(scope="module")
def int8_zips(tiny_export_int8, tmp_path_factory) -> dict[str, Path]:
    from toolbox.deploy.api import deploy

    out = tmp_path_factory.mktemp("sdk_int8")
    paths = deploy(tiny_export_int8, target=list(CPU_TARGETS), out=out, int8=True)
    return {p.name[len(tiny_export_int8.name) + 1:-4]: p for p in paths}


@pytest.fixture(scope="module")
def int8_reference(tiny_export_int8, tmp_path_factory) -> dict:
    return _predict_reference(tiny_export_int8, tmp_path_factory.mktemp("predict_ref_int8"), "onnxruntime-int8")


def _run(cmd, cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_cpu_zips_carry_the_int8_model_only(int8_zips):
    assert set(int8_zips) == set(CPU_TARGETS)
    for target, z in int8_zips.items():
        names = zipfile.ZipFile(z).namelist()
        assert any(n.endswith("/model/model_int8.onnx") for n in names), target
        assert not any(n.endswith("/model/model.onnx") for n in names), target
        top = names[0].split("/", 1)[0]
        cfg = json.loads(zipfile.ZipFile(z).read(f"{top}/model/infer_cfg.json"))
        assert [s["file"] for s in cfg["stages"]] == ["model_int8.onnx"], target


def test_int8_without_an_int8_export_is_refused(tiny_export_onnx, tmp_path):
    from toolbox.deploy.api import deploy
    from toolbox.errors import InputError

    with pytest.raises(InputError, match="onnx-int8"):
        deploy(tiny_export_onnx, target="linux-cpu-python", out=tmp_path, int8=True)


@pytest.mark.parametrize("target", ["linux-cpu-python", "windows-cpu-python"])
def test_python_demo_runs_int8_and_matches_predict(int8_zips, int8_reference, target, tmp_path):
    root = extract_zip(int8_zips[target], tmp_path)
    ref = int8_reference
    r = _run([sys.executable, "demo.py", "images/sample.png", "--threshold", f"{ref['threshold'] - ref['tol']:.6f}"],
             root)
    assert_same_detections(ref["boxes"], demo_boxes(r.stdout), ref["threshold"], tol=ref["tol"], what=f"{target} INT8")


def test_linux_cpu_cpp_runs_int8_and_matches_predict(int8_zips, int8_reference, tmp_path):
    require_tool("cmake")
    require_tool("g++")
    root = extract_zip(int8_zips["linux-cpu-cpp"], tmp_path)
    _run(["./build.sh"], root)
    ref = int8_reference
    r = _run(["./build/demo", "images/sample.png", "--model-dir", "model", "--threshold",
              f"{ref['threshold'] - ref['tol']:.6f}"], root)
    assert_same_detections(ref["boxes"], demo_boxes(r.stdout), ref["threshold"], tol=ref["tol"],
                           what="linux-cpu-cpp INT8", allow_unmatched=CPP_UNMATCHED)


def test_windows_cpu_cpp_runs_int8_under_wine(int8_zips, int8_reference, tmp_path, tmp_path_factory):
    require_tool("x86_64-w64-mingw32-g++")
    require_tool("cmake")
    require_tool("wine")
    from tests.test_deploy_cpp import _wineprefix

    root = extract_zip(int8_zips["windows-cpu-cpp"], tmp_path)
    _run(["./build.sh"], root)
    ref = int8_reference
    env = {"WINEPREFIX": str(_wineprefix(tmp_path_factory)), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}
    r = _run(["wine", "build/demo.exe", "images/sample.png", "--model-dir", "model", "--threshold",
              f"{ref['threshold'] - ref['tol']:.6f}"], root, env=env)
    assert_same_detections(ref["boxes"], demo_boxes(r.stdout), ref["threshold"], tol=ref["tol"],
                           what="windows-cpu-cpp INT8 under wine", allow_unmatched=CPP_UNMATCHED)
