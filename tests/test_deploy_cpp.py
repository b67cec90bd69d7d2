"""C++ SDKs, built from their zips with the zips' own build files and run:

- linux-cpu-cpp: CMake + g++ against the bundled ONNX Runtime kit, run on the sample image;
- windows-cpu-cpp: cross-built with MinGW-w64 (the zip's toolchain file) and run under wine;
- rk3588-cpp: the ONNX Runtime aarch64 fallback cross-built by build-linux.sh --cpu-only and run under
  qemu-aarch64 (same stages as the board: NPU graphs through their ONNX twins, CPU stages from
  src/cpu_stage.cpp, which the RKNN demo shares); build-linux.sh refuses clearly without rknn_api.h;
- linux-gpu-cpp / windows-gpu-cpp: built with the CUDA provider compiled in (no GPU here: running them is
  a CPU-fallback check).
Every run's detections are compared with `python -m toolbox predict --export` by IoU matching.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.fixtures.deploy import assert_same_detections, demo_boxes, extract_zip

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _demo_args(ref: dict) -> list[str]:
    return ["images/sample.png", "--model-dir", "model", "--threshold", f"{ref['threshold'] - ref['tol']:.6f}"]


def test_linux_cpu_cpp_builds_and_matches_predict(sdk_zips, predict_reference, tmp_path):
    require_tool("cmake")
    require_tool("g++")
    root = extract_zip(sdk_zips["linux-cpu-cpp"], tmp_path)
    _run(["./build.sh"], root)
    r = _run(["./build/demo", *_demo_args(predict_reference)], root)
    n = assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                               what="linux-cpu-cpp")
    assert n >= 1
    assert (root / "output" / "sample.jpg").stat().st_size > 1000, "the drawn image is saved"
    assert "ONNX Runtime 1.31.1" in r.stderr


def test_windows_cpu_cpp_mingw_build_runs_under_wine(sdk_zips, predict_reference, tmp_path, tmp_path_factory):
    require_tool("x86_64-w64-mingw32-g++")
    require_tool("cmake")
    require_tool("wine")
    root = extract_zip(sdk_zips["windows-cpu-cpp"], tmp_path)
    _run(["./build.sh"], root)  # the zip's cross build: cmake/mingw-w64-x86_64.cmake
    exe = root / "build" / "demo.exe"
    assert exe.is_file() and (root / "build" / "onnxruntime.dll").is_file(), "DLLs are copied next to demo.exe"
    env = {"WINEPREFIX": str(_wineprefix(tmp_path_factory)), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}
    r = _run(["wine", "build/demo.exe", *_demo_args(predict_reference)], root, env=env)
    assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                           what="windows-cpu-cpp under wine")
    assert (root / "output" / "sample.jpg").is_file()


def _wineprefix(tmp_path_factory) -> Path:
    """One wine prefix per session (the first start builds it, ~5-30 s)."""
    base = os.environ.get("TOOLBOX_CACHE")
    return Path(base) / "wineprefix" if base else tmp_path_factory.getbasetemp() / "wineprefix"


def test_rk3588_cpp_cpu_fallback_cross_built_runs_under_qemu(sdk_zips, predict_reference_rknn, tmp_path):
    require_tool("aarch64-linux-gnu-g++")
    require_tool("cmake")
    require_tool("qemu-aarch64")
    root = extract_zip(sdk_zips["rk3588-cpp"], tmp_path)
    r = subprocess.run(["./build-linux.sh"], cwd=root, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RKNN_API_DIR": str(tmp_path / "nowhere")})
    assert r.returncode != 0 and "rknn_api.h not found" in r.stderr and "--cpu-only" in r.stderr
    assert not (root / "build").exists(), "the failure comes before any build step"
    _run(["./build-linux.sh", "--cpu-only"], root)
    binary = root / "build" / "demo_ort"
    assert b"\x7fELF" == binary.read_bytes()[:4] and binary.read_bytes()[18] == 0xB7, "an aarch64 ELF"
    r = _run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "./build/demo_ort", *_demo_args(predict_reference_rknn)],
             root)
    assert "runs on the CPU as" in r.stderr, "NPU stages ran through their ONNX twins"
    assert_same_detections(predict_reference_rknn["boxes"], demo_boxes(r.stdout), predict_reference_rknn["threshold"],
                           tol=predict_reference_rknn["tol"], allow_unmatched=0.1,
                           what="rk3588-cpp fallback under qemu")


@pytest.mark.parametrize("target", ["linux-gpu-cpp", "windows-gpu-cpp"])
def test_gpu_cpp_builds_with_cuda_provider(sdk_zips, predict_reference, target, tmp_path, tmp_path_factory):
    """Built like the CPU ones, CUDA provider compiled in; without a GPU the demo warns and uses the CPU."""
    require_tool("cmake")
    require_tool("x86_64-w64-mingw32-g++" if target.startswith("windows") else "g++")
    root = extract_zip(sdk_zips[target], tmp_path)
    r = _run(["./build.sh"], root)
    cache = (root / "build" / "CMakeCache.txt").read_text()
    assert "TOOLBOX_WITH_CUDA:BOOL=ON" in cache
    if target.startswith("linux"):
        r = _run(["./build/demo", *_demo_args(predict_reference)], root)
    else:
        require_tool("wine")
        env = {"WINEPREFIX": str(_wineprefix(tmp_path_factory)), "WINEDEBUG": "-all"}
        r = _run(["wine", "build/demo.exe", *_demo_args(predict_reference)], root, env=env)
    assert "CUDA execution provider unavailable" in r.stderr and "running on the CPU" in r.stderr
    assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                           what=f"{target} (CPU fallback)")
