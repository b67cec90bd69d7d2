"""Static INT8 quantization of an exported ONNX detector for CPUs (issue 16): `model_int8.onnx`.

onnxruntime's static quantization, QDQ format, per-channel weights, calibrated on preprocessed images
of the run's train split. Which parts of RT-DETR stay FP32 is decided by measurement, not by guess:

1. calibration runs once (MinMax ranges of every tensor over the calibration images);
2. each stage (backbone, encoder, query_selection, decoder, heads) is quantized *alone* and its
   detections are compared with the FP32 graph's on a few images (matched fraction at the project's
   INT8 tolerance): that is the stage's sensitivity;
3. plans are tried from the most quantized one down: all stages, then without the most sensitive stage,
   then without the two most sensitive, ...; the first plan whose detections agree (matched fraction >=
   MIN_MATCHED) is taken, and the accuracy check (AP on the val split) then gates it: when the AP drop
   exceeds the limit the next, less quantized plan is tried, and the export fails when none holds.

Why not quantize_static itself: it calibrates on every call, and the sweep quantizes up to ten graphs;
`calibrate` + `quantize_with_ranges` are the two halves quantize_static runs (create_calibrator,
QDQQuantizer), with one calibration shared by every plan.

Stages are found through the weights: an ONNX node that reads an initializer belongs to the stage of the
Paddle parameter of that name (parameter names survive paddle2onnx); a node without weights belongs to the
stage of the last weighted node before it in the graph's (program) order.

Before calibration the graph goes through onnxruntime's quantization pre-processing (`prepare`: shape
inference, BatchNormalization folded into the Conv before it, constant folding). Without it every Conv
is followed by an FP32 BatchNormalization, so each Conv output is quantized and dequantized again and no
Conv+Relu fuses into an integer kernel. It keeps node names, so stages found on model.onnx carry over by
name (`carry_stages`).
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

# What is quantized: uint8 activations with int8 weights (u8s8, onnxruntime's fast x86 path). Measured on
# RT-DETR-R18 at 640 on an AMD EPYC (AVX2, no VNNI), FP32 and INT8 alternating, 30 runs: int8 activations
# (s8s8) ran at 1.21x FP32 (no fast s8s8 kernel without VNNI); u8s8 on Conv+MatMul ran at 0.75x.
# Beyond Conv and MatMul: every op between two quantized ones that onnxruntime has an integer kernel for
# (Relu, Clip and MaxPool merge into the producer's quantization; Add, Mul, Sigmoid, Concat, AveragePool,
# Resize run as QLinear ops; Transpose, Reshape, Split pass int8 through), so that a tensor is not
# dequantized and quantized again between two integer kernels. Profiled on an Intel Xeon (AVX-512 VNNI,
# AMX), R18 at 640: with Conv+MatMul only, 34 DequantizeLinear->QuantizeLinear requantizations (a Conv's
# output range, then the Relu's) took 20 ms of 150.
# Add and Mul stay FP32 where an operand is a constant or is broadcast (`fp32_elementwise`): a bias or a
# scale quantized to 8 bits loses the precision it exists for, the decoder's sampling locations
# (reference point + offset x scale, broadcast over heads and points) move by a quantization step, and
# onnxruntime's broadcast QLinearAdd/QLinearMul ran at 0.7-0.9 ms on [1, 300, 8, 12, 2] tensors.
# Same-run ratios to FP32 model.onnx on that CPU, idle (load <= 1.4, 30 alternating runs, one calibration
# for all), onnxruntime's default 2 threads, with the AP of the bench_learn model (R18 at 160, val AP
# 0.0886) all stages INT8:
#   Conv+MatMul only                                   0.60x
#   + Relu ... Split (no Mul, Sigmoid)                 0.55x   AP drop 0.0007, 84 % of detections matched
#   + Mul, Sigmoid (every Add/Mul quantized)           0.52x   AP drop 0.0041, 81 %
#   + Mul, Sigmoid, constant/broadcast Add/Mul FP32    0.51x   AP drop 0.0011, 88 %   <- this recipe
#   activations int8 (s8s8) instead of uint8           1.25x
# Also tried without gain: Softmax, GridSample, Gather, Slice, (Un)Squeeze quantized; SiLU fused to
# QuickGelu; LayerNorm kept FP32; onnxruntime 1.31.1 instead of 1.26.0 (same ratios).
# Another AMD EPYC with AVX2 alone (the name hides the model; the 0.75x above came from an earlier one),
# same export, 20 alternating runs at 2 threads: Conv+MatMul only 1.01x, this recipe 0.98x; profiled,
# QLinearConv took 889 ms where FP32 Conv took 928 ms (0.96x), in onnxruntime 1.26.0 and 1.31.1 alike,
# so no choice of ops reaches a speed-up on that CPU.
OP_TYPES = ("Conv", "MatMul", "Relu", "Clip", "MaxPool", "Add", "Mul", "Sigmoid", "Concat", "AveragePool",
            "GlobalAveragePool", "Resize", "Transpose", "Reshape", "Split")
DEFAULT_CALIB_SIZE = 200   # images of the train split used for calibration (all if fewer)
STAGES = ("backbone", "encoder", "query_selection", "decoder", "heads")
# Paddle parameter-name prefixes of each stage (the project's RT-DETR keeps PaddleDetection's names)
STAGE_PREFIXES = {
    "backbone": ("backbone.",),
    "encoder": ("neck.",),
    "query_selection": ("transformer.input_proj.", "transformer.enc_output.", "transformer.enc_score_head.",
                        "transformer.enc_bbox_head."),
    "decoder": ("transformer.decoder.", "transformer.query_pos_head."),
    "heads": ("transformer.dec_score_head.", "transformer.dec_bbox_head."),
}
# Detection agreement with FP32, the project's INT8 tolerance (rknn_export.py's INT8-hybrid check): INT8
# moves features by a few %, which shifts boxes by a few pixels and sigmoid scores by a few hundredths;
# IoU >= 0.8 and |dscore| <= 0.1 hold that, a broken stage (boxes elsewhere, scores flattened) does not
MATCH = {"iou_min": 0.8, "score_tol": 0.1}
MIN_MATCHED = 0.9          # share of the FP32 top-20 detections per image that must match
AGREEMENT_TOP = 20
SENSITIVITY_IMAGES = 16    # images (val, else train) for the per-stage sweep: 320 compared detections
# Below this FP32 AP the AP check cannot judge quantization: AP is a handful of chance matches (the tests'
# tiny run scores 0.000-0.002), so a drop <= 0.010 would pass whatever INT8 did to the model
JUDGE_MIN_AP = 0.05


class ArrayCalibrationReader:
    """Feeds calibration batches (batch 1) to onnxruntime's calibrator."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


# ---------------------------------------------------------------------------------------------- stages
def param_stages(named_params: Iterable[tuple[str, object]]) -> dict[str, str]:
    """{Paddle parameter tensor name (e.g. conv2d_3.w_0): stage} from model.named_parameters()."""
    out = {}
    for structured, param in named_params:
        for stage, prefixes in STAGE_PREFIXES.items():
            if structured.startswith(prefixes):
                out[str(getattr(param, "name", structured))] = stage
                break
    return out


def node_stages(model_path: str | os.PathLike, param_stage: dict[str, str]) -> dict[str, str]:
    """{ONNX node name: stage} for every node of the graph (see the module docstring)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    current = STAGES[0]
    out = {}
    for node in graph.node:
        hits = [param_stage[i] for i in node.input if i in param_stage]
        if hits:
            current = hits[0]
        out[node.name] = current
    return out


def stage_ranges(stages_of: dict[str, str]) -> dict[str, list[list[int]]]:
    """{stage: [[first, last], ...]} node positions (graph order) of each stage: the node-to-stage map in a
    form short enough for the report, from which a plan's excluded nodes can be rebuilt (`nodes_in`)."""
    out: dict[str, list[list[int]]] = {s: [] for s in STAGES}
    for i, stage in enumerate(stages_of.values()):
        runs = out[stage]
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return out


def nodes_in(model_path: str | os.PathLike, ranges: dict[str, list[list[int]]]) -> dict[str, str]:
    """The inverse of stage_ranges on the graph it was made from: {node name: stage}."""
    import onnx

    names = [n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node]
    return {names[i]: stage for stage, runs in ranges.items() for a, b in runs for i in range(a, b + 1)}


def prepare(model_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """onnxruntime's quant_pre_process: the graph that is calibrated and quantized (see the docstring)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    quant_pre_process(str(model_path), str(out_path), skip_symbolic_shape=False)
    return out_path


def carry_stages(stages_of: dict[str, str], prepared_path: str | os.PathLike) -> dict[str, str]:
    """{node name: stage} on the prepared graph: by name, and a node new there (e.g. a Transpose the
    optimizer added) takes the stage of the node before it."""
    import onnx

    out, current = {}, STAGES[0]
    for node in onnx.load(str(prepared_path), load_external_data=False).graph.node:
        current = stages_of.get(node.name, current)
        out[node.name] = current
    return out


# ---------------------------------------------------------------------------------------------- quantize
def calibrate(model_path: str | os.PathLike, feeds: Sequence[dict[str, np.ndarray]]):
    """MinMax ranges of every quantizable tensor over `feeds` (onnxruntime TensorsData)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    ops = list(OP_TYPES)
    with tempfile.TemporaryDirectory(prefix="ort.quant.") as tmp:
        cal = create_calibrator(Path(model_path), ops, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                # the augmented graph reduces each tensor to its min and max, so 200
                                # images keep only scalars (no max_intermediate_outputs needed: in
                                # onnxruntime 1.26 MinMax it drops the ranges it collected)
                                calibrate_method=CalibrationMethod.MinMax)
        cal.collect_data(ArrayCalibrationReader(feeds))
        ranges = cal.compute_data()
        del cal
    return ranges


def quantize_with_ranges(model_path: str | os.PathLike, out_path: str | os.PathLike, ranges,
                         exclude: Sequence[str] = (), reduce_range: bool = True,
                         op_types: Sequence[str] = OP_TYPES) -> Path:
    """Write the QDQ graph (temp file then rename). `exclude`: node names kept FP32; `op_types`: the op set
    quantized (the recipe's; benchmarks/bench_infer.py --int8-recipes times others).

    reduce_range (7-bit weights) is on because the file runs on CPUs we do not know: on x86 without VNNI
    (AVX2 only) onnxruntime's u8s8 kernel saturates its 16-bit pairwise sums with 8-bit weights. Measured
    on this machine (AVX2, no VNNI) on a small conv graph, u8s8: relative RMS error 7.4 % with 8-bit weights,
    1.7 % with reduce_range (tests/test_export_int8.py).
    """
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    ops = list(op_types)
    model = onnx.load_from_string(_shape_inferred(str(Path(model_path).resolve()), os.stat(model_path).st_mtime_ns))
    keep = sorted(set(exclude) | set(fp32_elementwise(model)))
    q = QDQQuantizer(model, True, reduce_range, QuantType.QInt8, QuantType.QUInt8, ranges, [], keep, ops, {})
    q.quantize_model()
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    try:
        q.model.save_model_to_file(tmp, False)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def fp32_elementwise(model) -> list[str]:
    """Names of the Add and Mul nodes kept FP32 (see OP_TYPES): an operand is a constant (initializer or
    Constant node), or the two operands' shapes differ (broadcast). `model` has inferred shapes; a
    dimension compares by its value, else by its symbolic name, so [N, 400, 256] + [N, 400, 256] is no
    broadcast while [N, 300, 8, 12, 2] * [N, 300, 1, 1, 2] is."""
    graph = model.graph
    constant = {t.name for t in graph.initializer}
    constant |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    shapes = {}
    for vi in [*graph.value_info, *graph.input, *graph.output]:
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?"
                               for d in vi.type.tensor_type.shape.dim]
    out = []
    for node in graph.node:
        if node.op_type not in ("Add", "Mul") or len(node.input) != 2:
            continue
        a, b = (shapes.get(i) for i in node.input)
        if any(i in constant for i in node.input) or a is None or a != b or "?" in a:
            out.append(node.name)
    return out


@functools.lru_cache(maxsize=2)
def _shape_inferred(path: str, mtime_ns: int) -> bytes:
    """The graph with inferred shapes, as quantize_static loads it, serialised: the sweep quantizes up to
    ten copies of one graph and shape inference of an R18 graph takes seconds."""
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    return load_model_with_shape_infer(Path(path)).SerializeToString()


def quantize(model_path: str | os.PathLike, out_path: str | os.PathLike, feeds: Iterable[dict[str, np.ndarray]],
             keep_fp32_nodes: Sequence[str] = (), reduce_range: bool = True) -> dict:
    """One-shot: calibrate on `feeds` and write `out_path` with `keep_fp32_nodes` left FP32."""
    ranges = calibrate(model_path, list(feeds))
    quantize_with_ranges(model_path, out_path, ranges, keep_fp32_nodes, reduce_range)
    return {"kept_fp32_nodes": len(keep_fp32_nodes), **RECIPE, "reduce_range": reduce_range}


RECIPE = {"format": "QDQ", "per_channel": True, "activations": "uint8", "weights": "int8",
          "op_types": list(OP_TYPES), "fp32_ops": "Add and Mul with a constant or broadcast operand",
          "calibration": "minmax", "reduce_range": True, "tool": "onnxruntime.quantization"}


# ---------------------------------------------------------------------------------------------- measuring
def run_graph(path: str | os.PathLike, X: np.ndarray, sizes: np.ndarray, batch: int = 4) -> list[np.ndarray]:
    """(labels, boxes, scores) of a contract graph over preprocessed images, in batches."""
    from .onnx import session

    sess = session(path)
    parts = [sess.run(None, {"images": X[i:i + batch], "orig_target_sizes": sizes[i:i + batch]})
             for i in range(0, len(X), batch)]
    return [np.concatenate([p[k] for p in parts]) for k in range(3)]


def agreement(ref: Sequence[np.ndarray], cand: Sequence[np.ndarray]) -> dict:
    """How INT8 detections agree with FP32 ones: matched fraction of FP32's top-20 per image (MATCH)."""
    from . import compare

    per = [compare.match_detections(tuple(r[i] for r in ref), tuple(c[i] for c in cand), top=AGREEMENT_TOP,
                                    **MATCH) for i in range(len(ref[0]))]
    s = compare.merge(per)
    frac = s.matched / max(1, s.compared)
    return {"matched_fraction": round(frac, 4), "compared": s.compared, "mean_iou": round(s.mean_iou, 4),
            "max_score_diff": round(s.max_score_diff, 4)}


def coco_ap(path: str | os.PathLike, dataset, preprocess: Callable, limit: int | None = None, batch: int = 4) -> dict:
    """COCO AP table of a contract ONNX graph on a CocoDetection split, through the toolbox's own evaluation
    (engine/evaluate.py: the same result conversion and COCOeval call as `eval`)."""
    from ..engine.evaluate import coco_results, score
    from .onnx import session
    from .runtime import load_image

    sess = session(path)
    ids = dataset.image_ids[:limit] if limit else list(dataset.image_ids)
    results: list[dict] = []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        X, sizes = preprocess([load_image(dataset.image_path(i)) for i in chunk])
        labels, boxes, scores = sess.run(None, {"images": X, "orig_target_sizes": sizes})
        results.extend(coco_results(chunk, labels, boxes, scores, dataset.cat_ids))
    rep = score(dataset.coco, results, ids, dataset.cat_ids, [str(c) for c in dataset.cat_ids])
    m = rep["metrics"]
    return {"AP": m["AP"] or 0.0, "AP50": m["AP50"] or 0.0, "images": len(ids)}


class Int8Plan:
    """One quantization choice: which stages are INT8, and what it measured."""

    def __init__(self, quantized: Sequence[str]):
        self.quantized = list(quantized)
        self.kept = [s for s in STAGES if s not in self.quantized]
        self.agreement: dict | None = None
        self.ap: dict | None = None

    def exclude(self, stages_of: dict[str, str]) -> list[str]:
        return [n for n, s in stages_of.items() if s not in self.quantized]

    def to_dict(self) -> dict:
        return {"quantized": self.quantized, "kept_fp32": self.kept, "agreement": self.agreement, "int8_ap": self.ap}


def plan_passes(plan: Int8Plan, max_ap_drop: float, judgeable: bool) -> bool:
    """The AP drop holds the limit and, when AP cannot judge the model, the detections agree with FP32's."""
    agrees = plan.agreement["matched_fraction"] >= MIN_MATCHED
    return bool(plan.ap["ap_drop"] <= max_ap_drop and (judgeable or agrees))


def most_faithful(plans: Sequence[Int8Plan], max_ap_drop: float) -> Int8Plan | None:
    """For a model AP cannot judge, when no plan reached MIN_MATCHED: the tried plan (within the AP limit)
    whose detections agree best with FP32's; None when none holds the AP limit (the check fails)."""
    ok = [p for p in plans if p.ap is not None and p.ap["ap_drop"] <= max_ap_drop]
    return max(ok, key=lambda p: (p.agreement["matched_fraction"], p.agreement["mean_iou"]), default=None)


def sensitivity(fp32_path: Path, work: Path, ranges, stages_of: dict[str, str], X: np.ndarray, sizes: np.ndarray,
                ref: Sequence[np.ndarray]) -> dict[str, dict]:
    """{stage: agreement with FP32 when that stage alone is INT8} (+ its node count)."""
    out = {}
    for stage in STAGES:
        nodes = [n for n, s in stages_of.items() if s == stage]
        if not nodes:
            continue
        path = quantize_with_ranges(fp32_path, work / f"only_{stage}.onnx", ranges,
                                    [n for n, s in stages_of.items() if s != stage])
        out[stage] = {**agreement(ref, run_graph(path, X, sizes)), "nodes": len(nodes)}
        path.unlink(missing_ok=True)
    return out


def plans_by_sensitivity(sens: dict[str, dict]) -> list[Int8Plan]:
    """All stages INT8, then the most sensitive kept FP32, then the two most sensitive, ... (one stage left)."""
    order = sorted(sens, key=lambda s: (-sens[s]["matched_fraction"], -sens[s]["mean_iou"]))  # least sensitive first
    return [Int8Plan([s for s in STAGES if s in order[:k]]) for k in range(len(order), 0, -1)]
