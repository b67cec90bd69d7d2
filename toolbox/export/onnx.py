"""Paddle static program -> ONNX (paddle2onnx, opset 16), named and checked.

opset 16 because GridSample entered ONNX there. paddle2onnx names the graph's outputs fetch_name_*;
they are renamed to the contract's names (labels, boxes, scores, or a stage's own names) and the
dynamic batch dimension is named `N`, so every consumer reads one signature. The graph is then cleaned
of what paddle2onnx leaves behind (onnx_lean.py).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..errors import RuntimeFailure
from .onnx_lean import lean
from .tools import output_to

OPSET = 16


def convert(paddle_dir: str | os.PathLike, save_file: str | os.PathLike, output_names: Sequence[str],
            *, fp16: bool = False, log_path: str | os.PathLike | None = None, lean_graph: bool = True) -> Path:
    """paddle_dir/model.json + model.pdiparams -> save_file, outputs renamed to `output_names`; with
    `lean_graph`, paddle2onnx's Identity chains, Conv + bias Add pairs and back-to-back Transposes are
    cleaned up (onnx_lean.py; exact, outputs unchanged)."""
    import onnx
    import paddle2onnx

    paddle_dir, save_file = Path(paddle_dir), Path(save_file)
    save_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = save_file.with_name(f".{save_file.name}.tmp")
    try:
        with output_to(log_path):
            paddle2onnx.export(str(paddle_dir / "model.json"), str(paddle_dir / "model.pdiparams"), str(tmp),
                               opset_version=OPSET, auto_upgrade_opset=False, enable_onnx_checker=True,
                               export_fp16_model=fp16)
    except Exception as e:  # noqa: BLE001 - paddle2onnx raises bare RuntimeError/Exception
        tmp.unlink(missing_ok=True)
        raise RuntimeFailure(f"paddle2onnx could not convert {paddle_dir}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
                             f" (full log: {log_path})") from e
    if not tmp.is_file():
        raise RuntimeFailure(f"paddle2onnx wrote no model for {paddle_dir} (see {log_path})")
    model = onnx.load(str(tmp))
    rename_outputs(model, output_names)
    name_batch_dim(model)
    if lean_graph:
        lean(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    os.replace(tmp, save_file)
    return save_file


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """float16 weights and compute, float32 inputs/outputs (same signature as the fp32 model).

    paddle2onnx 2.1.0's export_fp16_model flag leaves every weight in float32, so the fp32 graph is
    converted with onnxconverter-common instead, with three fixes found on RT-DETR graphs:
    - the decomposed LayerNorm (ReduceMean, Pow, Sqrt) stays float32: in float16 onnxruntime's
      SimplifiedLayerNormFusion breaks the graph ("name which does not exist") and precision suffers;
    - the graph's own Cast-to-float nodes become Cast-to-float16 (the converter leaves them, and the
      graph no longer type-checks);
    - "Cast" must not be in the block list: the converter then loops forever on the casts it adds.
    """
    import onnx
    from onnxconverter_common import float16

    dst = Path(dst)
    model = onnx.load(str(src))
    own_casts = {n.name for n in model.graph.node if n.op_type == "Cast"}
    model = float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=float16.DEFAULT_OP_BLOCK_LIST + ["ReduceMean", "Pow", "Sqrt"])
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.name in own_casts and node.output[0] not in outputs:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(model)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst


def rename_outputs(model, names: Sequence[str]) -> None:
    """Rename the graph outputs, in order, everywhere they are referenced."""
    outs = model.graph.output
    if len(outs) != len(names):
        raise RuntimeFailure(f"the converted graph has {len(outs)} outputs, expected {len(names)} ({', '.join(names)})")
    mapping = {o.name: n for o, n in zip(outs, names) if o.name != n}
    for node in model.graph.node:
        node.output[:] = [mapping.get(x, x) for x in node.output]
        node.input[:] = [mapping.get(x, x) for x in node.input]
    for o in outs:
        o.name = mapping.get(o.name, o.name)


def name_batch_dim(model, name: str = "N") -> None:
    """Give every symbolic dimension of the graph's inputs and outputs the same name (the batch)."""
    for v in list(model.graph.input) + list(model.graph.output):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param or (not d.HasField("dim_value")):
                d.dim_param = name


def op_counts(path_or_model) -> Counter:
    """Op types in a graph, subgraphs (If/Loop bodies) included."""
    import onnx

    model = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    counts: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return counts


def graph_io(path) -> dict:
    """{inputs, outputs: [{name, dtype, shape}]} of an ONNX file (dims: int or the symbolic name)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)

    def one(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or -1) for d in t.shape.dim]}

    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}


def session(path, threads: int | None = None):
    """An onnxruntime CPU session (threads: intra-op threads, None = onnxruntime's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
