"""ONNX stage graphs -> RK3588 `.rknn` files with rknn-toolkit2, verified in its simulator.

Why a split: the RK3588 NPU runs neither GridSample nor TopK. The RKNN export therefore uses the
discrete (gather) cross-attention sampling of RT-DETRv2 and gives rknn-toolkit2 two graphs with
neither op, while the two top-k steps run on the CPU in numpy (rtdetr_cpu.py):
encoder (NPU) -> select_queries (CPU) -> decoder (NPU) -> postprocess (CPU).

Facts this module relies on (rknn-toolkit2 2.5.0, ../shared/ENVIRONMENT.md):
- mean/std given to `config` are folded into the graph, so the encoder's runtime input is the uint8
  RGB image in NHWC; a graph with several inputs needs one mean/std list per input;
- `build` needs disable_rules=['squeeze_nd_add', 'squeeze_nd_mul'] on RT-DETR graphs;
- the simulator (`init_runtime()` with no target) only runs a model built in the same process, so
  every stage is verified right after its build, before `export_rknn`;
- FP16 builds compute float ops in FP16 but int64 Add/Mul exactly: the discrete sampling's pixel index
  (y * W + x) is therefore built from int64 x int64 products (models/deformable_attention.py), and only
  the location itself (loc * W + 0.5, before truncation) carries FP16's error: up to 0.07 px at 640,
  which reads a neighbouring pixel for ~3 % of the finest level's samples of a model whose points lie
  anywhere (27 % when every point sits on a rounding boundary, as in freshly initialised weights; see
  models/seeding.spread_sampling_points);
- INT8 of the whole DETR collapses every score to 0: only the encoder is quantized (calibrated on
  training images listed in dataset.txt), the decoder stays FP16 (hybrid quantization by stage).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import RuntimeFailure
from .onnx import graph_io, op_counts
from .tools import output_to

TARGET = "rk3588"
FORBIDDEN_OPS = ("GridSample", "TopK")
DISABLE_RULES = ["squeeze_nd_add", "squeeze_nd_mul"]
INSTALL_HINT = ("pip install torch==2.13.0 && pip install --no-deps rknn-toolkit2==2.5.0 && pip install psutil "
                "'ruamel.yaml>=0.17.21' scipy tqdm fast-histogram opencv-python-headless 'setuptools<81' "
                "(Linux x86_64, Python 3.11; scripts/setup.sh does all of it)")


def require_rknn():
    """The RKNN class, or a one-line RuntimeFailure (exit 3) naming the install command."""
    try:
        from rknn.api import RKNN
    except ImportError as e:  # rknn itself, or one of its imports (torch, pkg_resources, ...)
        missing = getattr(e, "name", None) or str(e)
        what = "rknn-toolkit2 is not installed" if missing in ("rknn", "rknn.api") else \
            f"rknn-toolkit2 cannot start: module '{missing}' is missing"
        raise RuntimeFailure(f"{what}; the RKNN export needs it. Install with: {INSTALL_HINT}") from e
    return RKNN


@contextmanager
def _cwd(path: str | os.PathLike) -> Iterator[None]:
    old = os.getcwd()
    Path(path).mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def check_graph(onnx_path: str | os.PathLike) -> dict:
    """Op counts of a graph meant for the NPU; RuntimeFailure if it holds GridSample or TopK."""
    counts = op_counts(onnx_path)
    bad = {op: counts[op] for op in FORBIDDEN_OPS if counts.get(op)}
    if bad:
        raise RuntimeFailure(f"{onnx_path} holds {bad}, which the RK3588 NPU cannot run; the export's graph "
                             f"split is broken (please report it)")
    return {"nodes": int(sum(counts.values())), "ops": dict(sorted(counts.items()))}


class NpuStage:
    """One ONNX graph built for RK3588 and kept loaded in the simulator.

    inputs: [(name, shape)] of the graph; mean/std: one list per input (channel = dim 1 of the ONNX
    input, the image's 3 channels for the encoder); quant 'fp16' or 'int8' (with `dataset`, a file
    listing one calibration image per line).
    """

    def __init__(self, onnx_path: str | os.PathLike, *, mean: Sequence[Sequence[float]],
                 std: Sequence[Sequence[float]], quant: str = "fp16", dataset: str | os.PathLike | None = None,
                 log_path: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None):
        RKNN = require_rknn()
        self.onnx_path = Path(onnx_path)
        self.quant = quant
        self.log_path = log_path
        self.output_names = [o["name"] for o in graph_io(self.onnx_path)["outputs"]]
        # rknn-toolkit2 drops outputs it finds constant and saves them as <name>.npy in the current folder
        with output_to(log_path), _cwd(workdir or self.onnx_path.parent):
            self.rknn = RKNN(verbose=False)
            self.rknn.config(mean_values=[list(m) for m in mean], std_values=[list(s) for s in std],
                             target_platform=TARGET, disable_rules=list(DISABLE_RULES))
            self._check(self.rknn.load_onnx(str(self.onnx_path)), "load_onnx")
            if quant == "int8":
                if not dataset:
                    raise RuntimeFailure("INT8 RKNN needs a calibration dataset.txt")
                self._check(self.rknn.build(do_quantization=True, dataset=str(dataset)), "build (int8)")
            else:
                self._check(self.rknn.build(do_quantization=False), "build (fp16)")
            self._check(self.rknn.init_runtime(), "init_runtime (simulator)")

    def _check(self, ret: int, step: str) -> None:
        if ret != 0:
            self.release()
            raise RuntimeFailure(f"rknn-toolkit2 {step} failed for {self.onnx_path.name} (code {ret}); "
                                 f"its log is in {self.log_path}")

    def infer(self, inputs: Sequence[np.ndarray], data_format: Sequence[str]) -> list[np.ndarray]:
        """Run the simulator on one sample (batch 1); outputs come back in the ONNX graph's layout."""
        with output_to(self.log_path):
            outs = self.rknn.inference(inputs=list(inputs), data_format=list(data_format))
        if outs is None:
            raise RuntimeFailure(f"the rknn-toolkit2 simulator returned nothing for {self.onnx_path.name} "
                                 f"(see {self.log_path})")
        if len(outs) != len(self.output_names):
            raise RuntimeFailure(
                f"rknn-toolkit2 folded away outputs of {self.onnx_path.name} as constants ({len(outs)} of "
                f"{len(self.output_names)}: {', '.join(self.output_names)} expected): an untrained head with zero "
                f"weights does this; train the model (even briefly) before exporting to RKNN")
        return [np.asarray(o, np.float32) for o in outs]

    def export(self, rknn_path: str | os.PathLike) -> Path:
        rknn_path = Path(rknn_path)
        tmp = rknn_path.with_name(f".{rknn_path.name}.tmp")
        with output_to(self.log_path):
            ret = self.rknn.export_rknn(str(tmp))
        if ret != 0 or not tmp.is_file():
            raise RuntimeFailure(f"rknn-toolkit2 export_rknn failed for {rknn_path.name} (see {self.log_path})")
        os.replace(tmp, rknn_path)
        return rknn_path

    def release(self) -> None:
        if getattr(self, "rknn", None) is not None:
            with output_to(self.log_path):
                self.rknn.release()
            self.rknn = None
