"""Graph clean-up of a converted ONNX model: what paddle2onnx leaves that a runtime must otherwise undo.

Why: paddle2onnx 2.1.0 writes an Identity node for most tensors it passes on (about a third of an
RT-DETR graph, in chains), a convolution with bias as Conv + Add of a [1,C,1,1] constant, and
back-to-back Transposes. onnxruntime removes all of these at session start, but other consumers of
model.onnx (rknn-toolkit2, TensorRT, OpenVINO, netron) read the file as written. Each pass is exact
(no arithmetic changes, except the Conv bias, which is added by the convolution instead of after it:
the same float32 additions):
- identities: every Identity whose output is not a graph output is bypassed and removed;
- conv_bias: Add(Conv(x, W), B) with B a constant of shape [1,C,1,1] / [C,1,1] / [C] (C the Conv's
  output channels) and the Conv output used only there becomes Conv(x, W, B);
- transposes: Transpose(Transpose(x, p1), p2) with the inner one used only there becomes one Transpose
  (perm p1[p2[i]]), or nothing when that is the identity permutation.
"""
from __future__ import annotations

from collections import Counter


def lean(model) -> dict:
    """Apply the passes (module docstring) to `model` (onnx.ModelProto) in place; returns per-pass counts."""
    counts = {"identities": _drop_identities(model.graph), "conv_bias": _fold_conv_bias(model.graph),
              "transposes": _merge_transposes(model.graph)}
    counts["identities"] += _drop_identities(model.graph)  # the transpose pass may leave bypassable names
    return counts


def _consumers(graph) -> Counter:
    uses: Counter = Counter()
    for node in graph.node:
        for name in node.input:
            uses[name] += 1
        for name in _subgraph_inputs(node):
            uses[name] += 1
    for out in graph.output:
        uses[out.name] += 1
    return uses


def _subgraph_inputs(node) -> list[str]:
    """Names read inside If/Loop/Scan bodies (they may refer to outer tensors)."""
    import onnx

    names: list[str] = []
    for attr in node.attribute:
        graphs = ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs)
        for g in graphs:
            for n in g.node:
                names.extend(n.input)
                names.extend(_subgraph_inputs(n))
    return names


def _rename_inputs(graph, mapping: dict[str, str]) -> None:
    import onnx

    def resolve(name: str) -> str:
        seen = set()
        while name in mapping and name not in seen:
            seen.add(name)
            name = mapping[name]
        return name

    def walk(g):
        for node in g.node:
            node.input[:] = [resolve(x) for x in node.input]
            for attr in node.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
                    walk(sub)

    walk(graph)


def _drop_identities(graph) -> int:
    outputs = {o.name for o in graph.output}
    mapping, keep = {}, []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            mapping[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not mapping:
        return 0
    _rename_inputs(graph, mapping)
    del graph.node[:]
    graph.node.extend(keep)
    return len(mapping)


def _fold_conv_bias(graph) -> int:
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses = _consumers(graph)
    outputs = {o.name for o in graph.output}
    drop, folded = set(), 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for conv_in, bias_in in (node.input, node.input[::-1]):
            conv = producer.get(conv_in)
            if (conv is None or conv.op_type != "Conv" or len(conv.input) != 2 or bias_in not in inits
                    or uses[conv_in] != 1 or conv_in in outputs or conv.input[1] not in inits):
                continue
            channels = inits[conv.input[1]].dims[0]
            bias = numpy_helper.to_array(inits[bias_in])
            if bias.dtype.kind != "f" or bias.size != channels or tuple(bias.shape) not in (
                    (1, channels, 1, 1), (channels, 1, 1), (channels,)):
                continue
            name = f"{conv.name or conv.output[0]}.bias"
            while name in inits:
                name += "_"
            inits[name] = None  # reserved
            graph.initializer.append(numpy_helper.from_array(bias.reshape(channels), name))
            conv.input.append(name)
            conv.output[0] = node.output[0]
            drop.add(id(node))
            folded += 1
            break
    if drop:
        keep = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(keep)
        _drop_unused_initializers(graph)
    return folded


def _perm(node) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == "perm":
            return list(attr.ints)
    return None  # default perm: reversed axes, rank unknown here


def _merge_transposes(graph) -> int:
    import onnx

    producer = {o: n for n in graph.node for o in n.output}
    uses = _consumers(graph)
    outputs = {o.name for o in graph.output}
    drop, merged, mapping = set(), 0, {}
    for node in graph.node:
        if node.op_type != "Transpose" or id(node) in drop:
            continue
        inner = producer.get(node.input[0])
        if (inner is None or inner.op_type != "Transpose" or id(inner) in drop or uses[inner.output[0]] != 1
                or inner.output[0] in outputs):
            continue
        p1, p2 = _perm(inner), _perm(node)
        if p1 is None or p2 is None or len(p1) != len(p2):
            continue
        perm = [p1[i] for i in p2]
        drop.add(id(inner))
        merged += 1
        if perm == list(range(len(perm))) and node.output[0] not in outputs:
            drop.add(id(node))
            mapping[node.output[0]] = inner.input[0]
            continue
        node.input[0] = inner.input[0]
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("perm", perm))
    if drop:
        keep = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(keep)
        _rename_inputs(graph, mapping)
    return merged


def _drop_unused_initializers(graph) -> None:
    used = set(_consumers(graph))
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
