"""SDK zips: what each target's zip holds, the deploy command's errors and exit codes, the runtime cache.

The zips themselves are built once per session (`sdk_zips`, tests/fixtures/deploy.py); the tests that build
and run the demos are test_deploy_cpp.py and test_deploy_python.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.fixtures.deploy import scratch_export
from toolbox.deploy.targets import TARGETS

COMMON = ("README.md", "VERSION", "LICENSES.md", "model/infer_cfg.yml", "model/infer_cfg.json",
          "model/labels.txt", "images/sample.png")


def _names(zpath: Path) -> tuple[str, set[str]]:
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
    root = names[0].split("/", 1)[0]
    return root, {n.split("/", 1)[1] for n in names}


def _read(zpath: Path, rel: str) -> bytes:
    with zipfile.ZipFile(zpath) as z:
        return z.read(f"{zpath.stem}/{rel}")


def _mode(zpath: Path, rel: str) -> int:
    with zipfile.ZipFile(zpath) as z:
        return (z.getinfo(f"{zpath.stem}/{rel}").external_attr >> 16) & 0o777


def test_one_zip_per_target(sdk_zips, deploy_export):
    assert sorted(sdk_zips) == sorted(TARGETS)
    for target, z in sdk_zips.items():
        assert z.name == f"{deploy_export.name}-{target}.zip"
        root, names = _names(z)
        assert root == z.stem, "every entry lies under one folder named like the zip"
        missing = [f for f in COMMON if f not in names]
        assert not missing, f"{target}: {missing}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_zip_contents(sdk_zips, target):
    z = sdk_zips[target]
    t = TARGETS[target]
    _, names = _names(z)
    cfg = json.loads(_read(z, "model/infer_cfg.json"))
    assert yaml.safe_load(_read(z, "model/infer_cfg.yml")) == cfg, "yml and json say the same"
    stages = cfg["stages"]
    if t.rk3588:
        assert {s["runtime"] for s in stages} >= {"rknn", "cpu"}, "the RK3588 zips run the NPU split"
        for s in stages:
            if s["runtime"] == "rknn":
                assert f"model/{s['file']}" in names and f"model/{s['onnx']}" in names
    else:
        assert [s["runtime"] for s in stages] == ["onnxruntime"] and "model/model.onnx" in names
    assert "paddle" not in {s["runtime"] for s in stages}

    version = dict(line.split(": ", 1) for line in _read(z, "VERSION").decode().splitlines())
    assert version["sdk_target"] == target and version["model"] == cfg["model_name"]
    assert "1.31.1" in version["tested_runtime"] and version["export_date"]
    readme = _read(z, "README.md").decode()
    licences = _read(z, "LICENSES.md").decode()

    if t.lang == "python":
        for f in ("demo.py", "rtdetr_cpu.py", "requirements.txt"):
            assert f in names
        req = _read(z, "requirements.txt").decode()
        pkg = "onnxruntime-gpu" if t.gpu else "onnxruntime"
        assert f"\n{pkg}==1.31.1\n" in req and "numpy==" in req and "opencv-python-headless==" in req
        assert ("rknn-toolkit-lite2==" in req) == t.rk3588
        demo = _read(z, "demo.py").decode()
        assert ('DEFAULT_DEVICE = "gpu"' in demo) == t.gpu
        assert "import toolbox" not in demo and "from toolbox" not in demo, "SDKs do not need the toolbox"
        script = "run.bat" if t.windows else "run.sh"
        assert script in names and ("run.sh" in names) != t.windows
        if t.windows:
            bat = _read(z, "run.bat")
            assert b"\r\n" in bat and b"\n" not in bat.replace(b"\r\n", b"")
            assert "py -3.11 -m venv .venv" in readme and r".venv\Scripts\python.exe demo.py images\sample.png" in readme
        else:
            assert _mode(z, "run.sh") & 0o111
            assert ".venv/bin/python demo.py images/sample.png" in readme
    else:
        kit = json.loads(_read(z, "onnxruntime/kit.json"))
        assert kit["onnxruntime"] == "1.31.1" and kit["package"] == ("onnxruntime-gpu" if t.gpu else "onnxruntime")
        for f in ("CMakeLists.txt", "src/ort_main.cpp", "src/common.cpp", "src/cpu_stage.cpp",
                  "onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt",
                  "onnxruntime/include/onnxruntime_cxx_api.h", "third_party/include/nlohmann/json.hpp",
                  "third_party/include/stb/stb_image.h", "third_party/licenses/nlohmann-json3-dev.copyright",
                  "third_party/licenses/libstb-dev.copyright"):
            assert f in names, f"{target}: {f}"
        assert any(n.startswith("onnxruntime/licenses/") for n in names), "the headers' provenance and licence"
        libs = {n.rsplit("/", 1)[1] for n in names if n.startswith("onnxruntime/lib/")}
        if t.windows:
            assert {"onnxruntime.dll", "onnxruntime_providers_shared.dll", "onnxruntime.def"} <= libs
            assert b"OrtGetApiBase" in _read(z, "onnxruntime/lib/onnxruntime.def")
            bat = _read(z, "build.bat")
            assert b"\r\n" in bat and b"lib /nologo /def:onnxruntime\\lib\\onnxruntime.def" in bat
            assert "ort_mingw_compat.h" in names and "cmake/mingw-w64-x86_64.cmake" in names
            assert "vc_redist" in readme and "build.bat" in readme
        else:
            assert "libonnxruntime.so.1" in libs and _mode(z, "onnxruntime/lib/libonnxruntime.so.1") & 0o111
            assert "build.bat" not in names
        if t.gpu:
            assert any("providers_cuda" in n for n in libs)
            assert b"TOOLBOX_WITH_CUDA" in _read(z, "CMakeLists.txt")
            assert '"use the CUDA execution provider' in _read(z, "CMakeLists.txt").decode() \
                and "ON)" in _read(z, "CMakeLists.txt").decode().split("TOOLBOX_WITH_CUDA", 1)[1].splitlines()[0]
        if t.rk3588:
            assert {"build-linux.sh", "src/rknn_main.cpp", "cmake/aarch64-linux-gnu.cmake"} <= names
            assert _mode(z, "build-linux.sh") & 0o111
            rknn = _read(z, "src/rknn_main.cpp").decode()
            for call in ("rknn_init", "rknn_query", "rknn_inputs_set", "rknn_run", "rknn_outputs_get"):
                assert call + "(" in rknn
            assert '#include "cpu_stage.hpp"' in rknn, "the NPU demo shares the CPU stages with the fallback"
        elif not t.windows:
            assert _mode(z, "build.sh") & 0o111 and "./build/demo images/sample.png" in readme
        assert "MIT" in licences and "nlohmann" in licences
    if t.gpu:
        assert "CUDA 13" in readme and "cuDNN 9" in readme
    if t.rk3588:
        assert "librknnrt.so" in readme and "qemu-aarch64" in readme or t.lang == "python"


def test_deploy_events_and_cli(deploy_export, tmp_path):
    """The CLI writes the zip(s) it names, prints their paths, and records events.jsonl ending ok."""
    out = tmp_path / "sdk"
    r = subprocess.run([sys.executable, "-m", "toolbox", "--workspace", str(tmp_path / "ws"), "deploy",
                        "--export", str(deploy_export), "--target", "linux-cpu-python,windows-gpu-python",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = [Path(p) for p in r.stdout.split()]
    assert [p.name for p in printed] == [f"{deploy_export.name}-linux-cpu-python.zip",
                                         f"{deploy_export.name}-windows-gpu-python.zip"]
    assert all(p.is_file() for p in printed)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "end" and events[-1]["status"] == "ok"
    assert [e["target"] for e in events if e["type"] == "log"] == ["linux-cpu-python", "windows-gpu-python"]
    assert not list(out.glob(".*.tmp")), "no temporary file left behind"


def _cli(args: list[str], tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "toolbox", "--workspace", str(tmp_path / "ws"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=full_env)


def test_deploy_usage_errors(tmp_path):
    exp = scratch_export(tmp_path / "exp")
    r = _cli(["deploy", "--export", str(exp), "--target", "linux-arm-cpp"], tmp_path)
    assert r.returncode == 2 and "unknown deploy target(s) linux-arm-cpp" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["deploy", "--export", "no-such-export", "--target", "all"], tmp_path)
    assert r.returncode == 2 and "no export named 'no-such-export'" in r.stderr
    not_export = tmp_path / "empty"
    not_export.mkdir()
    r = _cli(["deploy", "--export", str(not_export)], tmp_path)
    assert r.returncode == 1 and "infer_cfg.yml is missing" in r.stderr


def test_rk3588_needs_an_rknn_export(tmp_path):
    """Named explicitly, an RK3588 target without RKNN model is an input error; with `all` it is skipped."""
    exp = scratch_export(tmp_path / "exp")
    cfg = yaml.safe_load((exp / "infer_cfg.yml").read_text(encoding="utf-8"))
    cfg["stages"] = [s for s in cfg["stages"] if s["format"] == "onnx"]
    (exp / "infer_cfg.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    r = _cli(["deploy", "--export", str(exp), "--target", "rk3588-python", "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 1 and "--formats paddle,onnx,rknn" in r.stderr
    assert not list((tmp_path / "o").glob("*.zip"))
    (exp / "model.onnx").unlink()
    r = _cli(["deploy", "--export", str(exp), "--target", "linux-cpu-python", "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 1 and "lacks model.onnx" in r.stderr


def test_offline_with_empty_cache_names_the_fetch_command(tmp_path):
    """No network, nothing cached: exit 3 and the command to run where PyPI is reachable."""
    exp = scratch_export(tmp_path / "exp")
    env = {"TOOLBOX_CACHE": str(tmp_path / "empty-cache")}
    r = _cli(["deploy", "--export", str(exp), "--target", "linux-cpu-cpp", "--offline"], tmp_path, env)
    assert r.returncode == 3, r.stderr
    assert "python -m toolbox runtimes fetch --target linux-cpu-cpp" in r.stderr and "Traceback" not in r.stderr
    # a real download attempt that cannot reach an index fails the same way (pip without any index)
    env.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull, "TOOLBOX_NO_GITHUB": "1"})
    shutil.copytree(_helpers_cache(), tmp_path / "empty-cache" / "runtimes" / "cpp-helpers")
    r = _cli(["runtimes", "fetch", "--target", "windows-cpu-cpp"], tmp_path, env)
    assert r.returncode == 3, r.stderr
    assert "could not download onnxruntime==1.31.1 for win_amd64" in r.stderr
    assert "python -m toolbox runtimes fetch --target windows-cpu-cpp" in r.stderr


def _helpers_cache() -> Path:
    from toolbox.deploy import runtimes

    return runtimes.ensure_helpers()


def test_runtimes_list_and_pe_exports(sdk_zips, tmp_path):
    from toolbox.deploy import runtimes

    r = _cli(["runtimes", "list", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {row["kit"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(runtimes.KITS) and all(row["cached"] for row in rows.values())
    assert rows["win-x64"]["targets"] == ["windows-cpu-cpp"]
    dll = runtimes.kit_dir("win-x64") / "lib" / "onnxruntime.dll"
    assert "OrtGetApiBase" in runtimes.pe_exports(dll)
