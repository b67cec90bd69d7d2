"""Python SDKs, run from their zips:

- linux-cpu-python: unzipped, a fresh venv with only the zip's requirements.txt (from PyPI), the demo on
  the sample image, detections compared with `python -m toolbox predict --export` by IoU matching;
- windows-cpu/gpu-python: the same demo.py run on Linux in that venv, and run.bat checked;
- linux-gpu-python: onnxruntime-gpu (the cached wheel) in its own venv: imported, CUDA requested, the
  documented CPU fallback taken (no GPU here);
- rk3588-python: under qemu-aarch64 with a Debian arm64 Python 3.11 root (scripts/make_arm64_sysroot.sh)
  and the aarch64 wheels of its requirements, rknn-toolkit-lite2 included: RKNNLite cannot start off the
  board, so the NPU stages run through onnxruntime as the demo's fallback.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require, require_tool
from tests.fixtures.deploy import assert_same_detections, demo_boxes, extract_zip

pytestmark = pytest.mark.slow


def _run(cmd, cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _demo_args(ref: dict) -> list[str]:
    return ["images/sample.png", "--threshold", f"{ref['threshold'] - ref['tol']:.6f}"]


@pytest.fixture(scope="session")
def sdk_venv(sdk_zips, tmp_path_factory) -> Path:
    """A fresh venv holding only linux-cpu-python's requirements.txt; returns its python."""
    root = extract_zip(sdk_zips["linux-cpu-python"], tmp_path_factory.mktemp("venv_src"))
    venv = tmp_path_factory.mktemp("sdk_venv") / ".venv"
    _run([sys.executable, "-m", "venv", venv], root)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "-r", "requirements.txt"], root, timeout=900)
    return py


def test_linux_cpu_python_fresh_venv_matches_predict(sdk_zips, sdk_venv, predict_reference, tmp_path):
    root = extract_zip(sdk_zips["linux-cpu-python"], tmp_path)
    r = _run([sdk_venv, "-c", "import sys, onnxruntime; print(sys.prefix); assert 'toolbox' not in sys.modules"],
             root)
    assert r.stdout.strip() == str(sdk_venv.parent.parent), "the demo's venv, not the toolbox's"
    r = _run([sdk_venv, "-c", "import importlib.util as u; print(u.find_spec('toolbox') is None, u.find_spec('paddle') is None)"],
             tmp_path)
    assert r.stdout.split() == ["True", "True"], "the fresh venv has neither the toolbox nor Paddle"
    r = _run([sdk_venv, "demo.py", *_demo_args(predict_reference)], root)
    assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                           what="linux-cpu-python")
    assert (root / "output" / "sample.jpg").stat().st_size > 1000 and (root / "output" / "results.json").is_file()
    # a folder works too
    r = _run([sdk_venv, "demo.py", "images", "--out", "folder_out"], root)
    assert (root / "folder_out" / "sample.jpg").is_file()


@pytest.mark.parametrize("target", ["windows-cpu-python", "windows-gpu-python"])
def test_windows_python_demo_on_linux_and_bat(sdk_zips, sdk_venv, predict_reference, target, tmp_path):
    root = extract_zip(sdk_zips[target], tmp_path)
    r = _run([sdk_venv, "demo.py", *_demo_args(predict_reference)], root)
    if target == "windows-gpu-python":  # the CPU onnxruntime of the venv: the GPU demo warns and falls back
        assert "running on the CPU" in r.stderr
    assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                           what=f"{target} demo.py")
    bat = (root / "run.bat").read_bytes()
    assert bat.count(b"\r\n") == bat.count(b"\n"), "CRLF line endings"
    text = bat.decode()
    assert "py -3.11 -m venv .venv" in text and r".venv\Scripts\python.exe -m pip install -r requirements.txt" in text
    assert r".venv\Scripts\python.exe demo.py %INPUT%" in text and r"images\sample.png" in text
    for ref in re.findall(r"\b([\w.]+\.(?:py|txt|png))\b", text):  # every file the .bat names is in the zip
        assert (root / ref).exists() or (root / "images" / Path(ref).name).exists(), ref


def test_linux_gpu_python_imports_and_falls_back(sdk_zips, predict_reference, tmp_path):
    """onnxruntime-gpu from the runtime cache (the same wheel the C++ GPU kit came from)."""
    from toolbox.deploy import runtimes

    wheels = sorted((runtimes.cache_root() / "downloads").glob("onnxruntime_gpu-1.31.1-*manylinux*x86_64.whl"))
    require(bool(wheels), "the onnxruntime-gpu wheel is not cached (python -m toolbox runtimes fetch --target linux-gpu-cpp)")
    root = extract_zip(sdk_zips["linux-gpu-python"], tmp_path)
    venv = tmp_path / ".venv"
    _run([sys.executable, "-m", "venv", venv], root)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--find-links", wheels[0].parent, "-r", "requirements.txt"], root)
    r = _run([py, "-c", "import onnxruntime as o; print(o.__version__, o.get_device(), 'CUDAExecutionProvider' in o.get_available_providers())"], root)
    assert r.stdout.split() == ["1.31.1", "GPU", "True"]
    r = _run([py, "demo.py", *_demo_args(predict_reference)], root)
    assert "running on the CPU" in r.stderr, "no GPU here: the demo must say it falls back"
    assert_same_detections(predict_reference["boxes"], demo_boxes(r.stdout), predict_reference["threshold"],
                           tol=predict_reference["tol"],
                           what="linux-gpu-python (CPU fallback)")


@pytest.fixture(scope="session")
def arm64_python(tmp_path_factory) -> tuple[Path, Path]:
    """(arm64 root, site dir with the aarch64 wheels) built once and cached under $TOOLBOX_CACHE."""
    require_tool("qemu-aarch64")
    require_tool("debootstrap")
    require(os.geteuid() == 0, "debootstrap needs root")
    r = _run(["bash", ROOT / "scripts" / "make_arm64_sysroot.sh"], ROOT, timeout=1200)
    return Path(r.stdout.strip().splitlines()[-1]), tmp_path_factory.mktemp("arm64_site")


def test_rk3588_python_fallback_under_qemu(sdk_zips, arm64_python, predict_reference_rknn, tmp_path):
    rootfs, site = arm64_python
    root = extract_zip(sdk_zips["rk3588-python"], tmp_path)
    reqs = [line.split(";")[0].strip() for line in (root / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert any(q.startswith("rknn-toolkit-lite2==") for q in reqs)
    # pip evaluates markers for this machine, so the aarch64-only line is passed explicitly
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", site, "--platform", "manylinux_2_28_aarch64",
          "--platform", "manylinux2014_aarch64", "--only-binary=:all:", "--python-version", "3.11",
          "--implementation", "cp", *reqs], root, timeout=900)
    env = {"PYTHONPATH": str(site), "QEMU_LD_PREFIX": str(rootfs)}
    r = _run(["qemu-aarch64", "-L", rootfs, rootfs / "usr/bin/python3.11", "demo.py", *_demo_args(predict_reference_rknn)],
             root, timeout=900, env=env)
    assert "RKNN runtime unavailable" in r.stderr or "rknn-toolkit-lite2 is not installed" in r.stderr
    assert_same_detections(predict_reference_rknn["boxes"], demo_boxes(r.stdout), predict_reference_rknn["threshold"],
                           tol=predict_reference_rknn["tol"], allow_unmatched=0.1,
                           what="rk3588-python fallback under qemu")
