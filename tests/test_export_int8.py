"""INT8 quantization step (toolbox.export.onnx_int8) on a small real ONNX conv graph run by onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from toolbox.export import onnx_int8


def _conv_model(path):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (4, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["images", "w1"], ["a"], name="backbone/conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="backbone/relu1"),
             helper.make_node("Conv", ["b", "w2"], ["out"], name="head/conv2", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 16])], [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)]), str(path))


def test_quantize_keeps_prefixed_nodes_fp32_and_stays_close(tmp_path):
    src, dst = tmp_path / "model.onnx", tmp_path / "model_int8.onnx"
    _conv_model(src)
    rng = np.random.default_rng(1)
    feeds = [{"images": rng.random((1, 3, 16, 16), np.float32)} for _ in range(16)]
    info = onnx_int8.quantize(src, dst, feeds, keep_fp32_prefixes=["head/"])
    assert info["kept_fp32_nodes"] == 1
    q = onnx.load(str(dst)).graph
    # the backbone conv reads a DequantizeLinear output; the head conv's weight stays the FP32 initializer
    producers = {o: n.op_type for n in q.node for o in n.output}
    convs = {n.name: n for n in q.node if n.op_type == "Conv"}
    assert producers[convs["backbone/conv1"].input[1]] == "DequantizeLinear"
    assert convs["head/conv2"].input[1] == "w2"
    x = feeds[0]
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)[0]
    out = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, x)[0]
    rel_rms = float(np.sqrt(np.mean((out - ref) ** 2)) / np.std(ref))
    # measured 2.2% (7-bit weights, onnxruntime's fused int8 kernels, AVX2 CPU); 8-bit weights on the same
    # CPU saturate and give 7.7%, which this 4% bound rejects; a wrong scale or layout gives ~100%
    assert rel_rms <= 0.04, rel_rms
    assert rel_rms > 0  # the graph really computes in int8 (an FP32 copy would give exactly 0)
