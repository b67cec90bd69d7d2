"""`deploy`: an export folder → one self-sufficient SDK zip per target (CONTRACTS.md "SDK zips").

Each zip holds `<export>-<target>/` with model/ (the graphs this target runs, infer_cfg.yml/json trimmed to
its stages, labels.txt), images/sample.png, the demo sources and build files, README.md, VERSION,
LICENSES.md and, for C++ targets, the ONNX Runtime kit (onnxruntime/) and header-only helpers
(third_party/) from the runtime cache (see runtimes.py).
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

from .. import __version__
from ..errors import InputError, ToolboxError, UsageError
from ..events import EventLog
from ..workspace import Workspace, record_job_output
from . import package, runtimes
from .targets import ORT_VERSION, Target, resolve_targets

# Versions the Python demos were run with in the tests (the SDK venv test installs exactly these).
PY_PINS = {"numpy": "2.4.6", "opencv-python-headless": "5.0.0.93"}
RKNN_LITE_VERSION = "2.5.0"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def deploy(export: str | os.PathLike, target: str | list[str] = "all", out: str | os.PathLike | None = None,
           workspace: Workspace | str | os.PathLike | None = None, *, sample: str | os.PathLike | None = None,
           fetch: bool = True, int8: bool = False) -> list[Path]:
    """Write `<out>/<export-name>-<target>.zip` for each target; returns the zip paths.

    export: an export name in the workspace or an export folder. target: a name, a comma list or "all"
    (with "all", RK3588 targets are skipped with a warning when the export has no RKNN model). out:
    default `workspace/sdk/`. sample: the picture shipped as images/sample.png (default: one found in
    the export or its dataset, else a generated one). fetch: download missing runtime kits. int8: the CPU
    targets (linux/windows-cpu-python/cpp) carry model_int8.onnx, the export's accuracy-checked INT8 model,
    instead of model.onnx (GPU and RK3588 targets keep their own models: INT8 ONNX is for CPUs).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    export_dir = ws.export_dir(export)
    cfg = _read_cfg(export_dir)
    out_dir = Path(out).expanduser().resolve() if out else ws.sdk
    out_dir.mkdir(parents=True, exist_ok=True)
    record_job_output(ws, out_dir)
    targets = resolve_targets(target)
    explicit = not (isinstance(target, str) and target.strip() == "all")
    plans = []
    for t in targets:
        use_int8 = int8 and _cpu_target(t)
        if int8 and not use_int8:
            print(f"warning: {t.name} keeps its own model: --int8 applies to the CPU targets", file=sys.stderr)
        if use_int8 and not any(s.get("format") == "onnx_int8" for s in cfg["stages"]):
            raise InputError(f"export {export_dir} has no INT8 model (model_int8.onnx) for {t.name} --int8; re-export "
                             f"with `python -m toolbox export ... --formats onnx-int8`")
        stages = _stages_for(t, cfg, int8=use_int8)
        if stages is None:
            rf = str(cfg.get("arch", "")).upper().startswith("RF-DETR")
            msg = (f"export {export_dir} has no RKNN model for {t.name}; re-export with "
                   f"`python -m toolbox export ... --formats {'onnx,rknn' if rf else 'paddle,onnx,rknn'}`"
                   + (" (if it was asked for, export_report.json says why rknn-toolkit2 did not convert it)"
                      if rf else ""))
            if explicit:
                raise InputError(msg)
            print(f"warning: skipping {t.name}: {msg}", file=sys.stderr)
            continue
        missing = [f for f in _stage_files(stages) if not (export_dir / f).is_file()]
        if missing:
            raise InputError(f"export {export_dir} lacks {', '.join(missing)} named in infer_cfg.yml "
                             f"(needed by {t.name}); re-export the model")
        plans.append((t, stages))
    events = EventLog(out_dir / "events.jsonl")
    events.write("start", export=str(export_dir), targets=[t.name for t, _ in plans], out=str(out_dir))
    try:
        sample_png = _sample_png(export_dir, sample)
        paths = []
        from tqdm import tqdm

        for i, (t, stages) in enumerate(tqdm(plans, desc="deploy", unit="zip", file=sys.stderr,
                                             disable=not sys.stderr.isatty())):
            zpath = out_dir / f"{export_dir.name}-{t.name}.zip"
            build_zip(t, export_dir, cfg, stages, sample_png, zpath, fetch=fetch)
            size_mb = round(zpath.stat().st_size / 2**20, 2)
            events.write("log", step=i + 1, total_steps=len(plans), target=t.name, zip=str(zpath), size_mb=size_mb)
            print(f"{t.name}: {zpath} ({size_mb} MB)", file=sys.stderr)
            paths.append(zpath)
    except ToolboxError as e:
        events.end("failed", e.exit_code, str(e))
        raise
    except KeyboardInterrupt:
        events.end("cancelled", 130, "cancelled")
        raise
    events.end("ok", 0, None, zips=[str(p) for p in paths])
    return paths


# ------------------------------------------------------------------------------------------ export
def _read_cfg(export_dir: Path) -> dict:
    import yaml

    path = export_dir / "infer_cfg.yml"
    if not path.is_file():
        raise InputError(f"{path} is missing: not an export folder (make one with `python -m toolbox export`)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path} is not valid YAML: {e}") from e
    missing = [k for k in ("input_size", "label_list", "stages") if k not in cfg]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: re-export the model with this toolbox version")
    return cfg


def _cpu_target(t: Target) -> bool:
    return t.device == "cpu" and not t.rk3588


def _stages_for(t: Target, cfg: dict, int8: bool = False) -> list[dict] | None:
    """The stages this target runs: the RKNN split on RK3588, the single ONNX graph elsewhere (the INT8 one
    on CPU targets when `int8`)."""
    stages = [s for s in cfg["stages"] if s.get("runtime") != "paddle"]
    fmt = "rknn" if t.rk3588 else ("onnx_int8" if int8 else "onnx")
    if any("format" in s for s in stages):
        stages = [s for s in stages if s.get("format") == fmt]
    elif t.rk3588:
        stages = [s for s in stages if any(x.get("runtime") == "rknn" for x in cfg["stages"])]
    else:
        stages = [s for s in stages if s.get("runtime") != "rknn"]
    return stages or None


def _stage_files(stages: list[dict]) -> list[str]:
    files = []
    for s in stages:
        for key in ("file", "onnx"):
            if s.get(key) and s.get("runtime") != "cpu":
                files.append(s[key])
        if isinstance(s.get("files"), dict):
            files.extend(str(v) for v in s["files"].values())
    return list(dict.fromkeys(files))


def _sample_png(export_dir: Path, sample: str | os.PathLike | None) -> bytes:
    """images/sample.png: lossless, so every demo decodes the very same pixels."""
    import io

    from PIL import Image, ImageOps

    candidates = [Path(sample)] if sample else []
    candidates += sorted(p for p in export_dir.glob("sample*") if p.suffix.lower() in IMAGE_SUFFIXES)
    candidates += sorted(p for p in (export_dir / "samples").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    candidates += [Path(p) for p in _export_report(export_dir).get("samples") or []]
    candidates += _dataset_images(export_dir)
    for p in candidates:
        if p.is_file():
            try:
                with Image.open(p) as im:
                    buf = io.BytesIO()
                    ImageOps.exif_transpose(im).convert("RGB").save(buf, "PNG")
                    return buf.getvalue()
            except OSError as e:
                if sample:
                    raise InputError(f"cannot read the sample image {p}: {e}") from e
    if sample:
        raise InputError(f"sample image {sample} not found")
    import numpy as np

    rng = np.random.default_rng(0)  # last resort: a neutral picture, so the demo still runs end to end
    img = np.full((480, 640, 3), 127, np.uint8) + rng.integers(0, 20, (480, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def _dataset_images(export_dir: Path) -> list[Path]:
    """Validation images of the dataset the exported run was trained on, when the export says which."""
    import json

    report = export_dir / "export_report.json"
    try:
        info = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ds = info.get("dataset") or info.get("dataset_dir")
    if not ds:
        return []
    root = Path(ds) if Path(ds).is_absolute() else export_dir.parent.parent / "datasets" / ds
    ann = root / "annotations" / "instance_val.json"
    try:
        images = json.loads(ann.read_text(encoding="utf-8")).get("images", [])
    except (OSError, ValueError):
        return []
    return [root / "images" / im["file_name"] for im in images[:3]] + \
           [root / im["file_name"] for im in images[:3]]


# ---------------------------------------------------------------------------------------------- zip
def build_zip(t: Target, export_dir: Path, cfg: dict, stages: list[dict], sample_png: bytes, zpath: Path,
              *, fetch: bool = True) -> Path:
    """Assemble and write the zip of target `t`."""
    b = package.Bundle(zpath.stem)
    zcfg = copy.deepcopy(cfg)
    zcfg["stages"] = stages
    zcfg.setdefault("io", {})
    import yaml

    b.add_bytes("model/infer_cfg.yml", yaml.safe_dump(zcfg, sort_keys=False, allow_unicode=True))
    b.add_bytes("model/infer_cfg.json", package.dump_json(zcfg))
    labels = export_dir / "labels.txt"
    b.add_bytes("model/labels.txt", labels.read_bytes() if labels.is_file()
                else ("\n".join(cfg["label_list"]) + "\n").encode("utf-8"))
    for f in _stage_files(stages):
        b.add_file(f"model/{f}", export_dir / f)
    b.add_bytes("images/sample.png", sample_png)

    kit = helpers = None
    if t.kit:
        kit = runtimes.ensure_kit(t.kit, fetch=fetch, target=t.name)
        helpers = runtimes.ensure_helpers(fetch=fetch)
    report = _export_report(export_dir)
    ctx = package.target_context(
        t, toolbox_version=__version__, export_name=export_dir.name, model_name=cfg.get("model_name", "?"),
        input_size=cfg.get("input_size"), num_classes=len(cfg["label_list"]), labels=cfg["label_list"],
        export_date=report.get("created") or report.get("time") or _mtime(export_dir / "infer_cfg.yml"),
        deploy_date=package.now_iso(), ort_version=ORT_VERSION, py_pins=PY_PINS, rknn_lite=RKNN_LITE_VERSION,
        kit=runtimes.kit_info(kit) if kit else None, stages=stages, zip_root=zpath.stem,
        ort_package="onnxruntime-gpu" if t.gpu else "onnxruntime")

    if t.lang == "python":
        b.add_templates("python", ctx, skip=lambda rel: rel == "demo.py" or rel == ("run.sh.j2" if t.windows
                                                                                   else "run.bat.j2"))
        demo = (package.TEMPLATES / "python" / "demo.py").read_text(encoding="utf-8")
        if t.gpu:
            marker = 'DEFAULT_DEVICE = "cpu"'
            if marker not in demo:
                raise RuntimeError("templates/python/demo.py lost its DEFAULT_DEVICE line")
            demo = demo.replace(marker, 'DEFAULT_DEVICE = "gpu"')
        b.add_bytes("demo.py", demo)
        b.add_file("rtdetr_cpu.py", _rtdetr_cpu(export_dir))
    else:
        def skip(rel: str) -> bool:
            if rel in ("ort_mingw_compat.h", "build.bat.j2", "cmake/mingw-w64-x86_64.cmake"):
                return not t.windows
            if rel == "cmake/aarch64-linux-gnu.cmake":
                return not t.rk3588
            return rel == "build.sh.j2" and t.rk3588

        b.add_templates("cpp", ctx, skip=skip)
        if t.rk3588:
            b.add_templates("rk3588", ctx)  # its CMakeLists.txt / README replace the generic ones
        b.add_tree("onnxruntime/include", kit / "include")
        b.add_tree("onnxruntime/lib", kit / "lib")
        for name in ("LICENSE", "ThirdPartyNotices.txt"):
            b.add_file(f"onnxruntime/{name}", kit / name)
        b.add_tree("onnxruntime/licenses", kit / "licenses")
        b.add_bytes("onnxruntime/kit.json", (kit / "kit.json").read_bytes())
        b.add_tree("third_party/include", helpers / "include")
        b.add_tree("third_party/licenses", helpers / "licenses")
    b.add_templates("common", ctx)
    return b.write(zpath)


def _rtdetr_cpu(export_dir: Path) -> Path:
    """The numpy CPU stages: the export's own copy when it has one, else the toolbox's."""
    own = export_dir / "rknn" / "rtdetr_cpu.py"
    if own.is_file():
        return own
    from ..export import rtdetr_cpu

    return Path(rtdetr_cpu.__file__)


def _export_report(export_dir: Path) -> dict:
    import json

    try:
        return json.loads((export_dir / "export_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _mtime(p: Path) -> str:
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return "unknown"


def check_out_arg(out: str | None) -> None:
    if out and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the zips")
