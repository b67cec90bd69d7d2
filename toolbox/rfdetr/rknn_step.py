"""The `rknn` step of an RF-DETR export: convert what converts with rknn-toolkit2, and report it.

What is given to rknn-toolkit2: rknn/rknn_input.onnx, the detector up to its raw outputs (images [1,3,S,S]
-> pred_logits [1,Q,C] foreground classes, pred_boxes [1,Q,4]; traced through rfdetr's export path like
model.onnx), FP16, batch 1, ImageNet mean/std folded in (so the board feeds the uint8 RGB image, NHWC). The
post-processing (top-K over queries x classes, boxes to pixels) runs on the CPU with the RT-DETR export's
numpy stage (toolbox/export/rtdetr_cpu.postprocess, which is rfdetr's PostProcess on these outputs).

Unlike RT-DETR's split, the graph keeps the two operators the RK3588 NPU does not run, GridSample
(deformable attention) and TopK (two-stage query selection): rknn-toolkit2 assigns them to the board's CPU
inside the .rknn model. Which operators run on the CPU is read from rknn-toolkit2's own layer table and
recorded in export_report.json (formats.rknn.cpu_ops). A full NPU graph is not the goal here.

When a build rule of rknn-toolkit2 fails, its log names the rule to disable; the conversion is retried
without it (at most MAX_ATTEMPTS times) and the rules disabled are reported. When the conversion still
fails, or its simulator disagrees with onnxruntime on the sample images, the export does not fail: the
report says why, no rknn stage is written, and `deploy` says that the export has no RKNN model for the
rk3588 targets.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..export import compare
from ..export.compare import FP16_MATCH
from ..export.onnx_export import FP16_MIN_MATCHED
from ..export.rknn import DISABLE_RULES, TARGET

MAX_ATTEMPTS = 6
# rknn-toolkit2 2.5.0's two SDPA fusions fail the build on the DINOv2 backbone's windowed attention
# (RF-DETR-N at 384: two failed attempts before the retry loop disabled them, rknn step 96 s; 67 s), so they
# start disabled; a build rule that fails on another size or version is still found by the retries
RF_DISABLE_RULES = [*DISABLE_RULES, "fuse_matmul_softmax_matmul_to_sdpa",
                    "fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"]
ATTEMPT_TIMEOUT_S = 1800
_HINT = re.compile(r"disable_rules=\['([A-Za-z0-9_]+)'\]")
# rknn-toolkit2's verbose "Network Layer Information Table": ID OpType DataType Target InputShape ...
_LAYER = re.compile(r"RKNN: \[[^\]]+\]\s+(\d+)\s+(\w+)\s+(\w+)\s+(CPU|NPU)\s")


def layer_targets(log_text: str) -> dict:
    """{"cpu_ops": {op: n}, "npu_ops": {op: n}} from rknn-toolkit2's layer table (its last one in the log)."""
    rows = {}
    for m in _LAYER.finditer(log_text):
        rows[int(m.group(1))] = (m.group(2), m.group(4))   # a later table overwrites an earlier one
    cpu = Counter(op for op, t in rows.values() if t == "CPU" and op not in ("InputOperator", "OutputOperator"))
    npu = Counter(op for op, t in rows.values() if t == "NPU")
    return {"cpu_ops": dict(sorted(cpu.items())), "npu_ops": dict(sorted(npu.items())),
            "layers": len(rows)}


def export_rknn(job) -> None:
    """rknn/rknn_input.onnx -> rknn/model_rk3588_fp16.rknn when rknn-toolkit2 converts it; see the module doc."""
    import shutil

    from ..export import rtdetr_cpu
    from ..export.onnx import graph_io, session
    from .export import trace_onnx

    rdir = job.dir / "rknn"
    rdir.mkdir(parents=True, exist_ok=True)
    onnx_path = trace_onnx(job, rdir / "rknn_input.onnx", raw_only=True)
    S, C, n = int(job.src.input_size), int(job.src.num_classes), len(job.samples)
    from ..export.runtime import resize

    resized = np.stack([resize(im, S, job.infer_cfg_base["interp"]) for _, im in job.samples]).astype(np.uint8)
    np.savez(job.work / "rknn_inputs.npz", images=resized)
    rknn_file = rdir / f"model_{TARGET}_fp16.rknn"
    entry = {"files": [], "graph": "rknn/rknn_input.onnx", "quant": "fp16", "target": TARGET, "converted": False,
             "passed": False}
    rules, attempts, reason = list(RF_DISABLE_RULES), 0, None
    log_text = ""
    while attempts < MAX_ATTEMPTS:
        attempts += 1
        log = job.work / f"rknn_attempt{attempts}.log"
        spec = {"onnx": str(onnx_path), "rknn": str(rknn_file), "target": TARGET, "workdir": str(job.work),
                "mean": [255.0 * m for m in job.infer_cfg_base["mean"]],
                "std": [255.0 * s for s in job.infer_cfg_base["std"]], "disable_rules": rules,
                "inputs": str(job.work / "rknn_inputs.npz"), "outputs": str(job.work / "rknn_outputs.npz")}
        spec_path = job.work / "rknn_spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        job.info(f"rknn: converting with rknn-toolkit2 (attempt {attempts}, rules disabled: {', '.join(rules)})")
        try:
            with open(log, "wb") as fh:
                rc = subprocess.run([sys.executable, "-m", "toolbox.rfdetr.rknn_convert", str(spec_path)],
                                    stdout=fh, stderr=subprocess.STDOUT, timeout=ATTEMPT_TIMEOUT_S,
                                    cwd=str(Path(__file__).resolve().parents[2])).returncode
        except subprocess.TimeoutExpired:
            rc, reason = -1, f"rknn-toolkit2 did not finish within {ATTEMPT_TIMEOUT_S} s"
        log_text = log.read_text(encoding="utf-8", errors="replace")
        with open(job.log, "a", encoding="utf-8") as fh:
            fh.write(log_text)
        if rc == 0:
            break
        hint = _HINT.findall(log_text)
        new = [h for h in hint if h not in rules]
        marks = [line for line in log_text.splitlines() if line.startswith("RFEXPORT:")]
        reason = reason or (marks[-1][len("RFEXPORT: "):] if marks else f"the converter exited with status {rc}")
        if rc != 4 or not new:
            break
        rules.append(new[0])
        reason = None
    entry.update(attempts=attempts, disable_rules=rules)
    if rc != 0:
        entry["reason"] = reason
        job.report.format("rknn", **entry)
        job.report.warn(f"rknn: rknn-toolkit2 could not convert the RF-DETR graph ({reason}); the export has no "
                        f"RKNN model (see export.log)")
        job.info(f"rknn: not converted ({reason})")
        return
    targets = layer_targets(log_text)
    entry.update(converted=True, files=[f"rknn/{rknn_file.name}", "rknn/rknn_input.onnx", "rknn/rtdetr_cpu.py"],
                 **targets)
    # the check: simulator vs onnxruntime on the same graph, both post-processed by the CPU stage
    sim = np.load(job.work / "rknn_outputs.npz")
    ort_out = [session(onnx_path).run(None, {"images": job.X[i:i + 1]}) for i in range(n)]
    ref = rtdetr_cpu.postprocess(np.concatenate([o[0] for o in ort_out]), np.concatenate([o[1] for o in ort_out]),
                                 job.sizes, job.num_top)
    got = rtdetr_cpu.postprocess(sim["pred_logits"], sim["pred_boxes"], job.sizes, job.num_top)
    stats = job.match(ref, got, FP16_MATCH)
    # as the RT-DETR export's FP16 ONNX check (onnx_export.export_onnx_fp16): inside one FP16 graph the encoder's
    # proposal ranking cannot be observed, and a near-tied swap moves a whole image's queries (export.compare_raw),
    # so a share FP16_MIN_MATCHED of the reference detections must match, not all
    frac = stats["matched"] / max(1, stats["compared"])
    stats.update(ok=frac >= FP16_MIN_MATCHED, matched_fraction=round(frac, 4), min_matched_fraction=FP16_MIN_MATCHED)
    entry.update(passed=bool(stats["ok"]), check={
        "what": "rknn-toolkit2 simulator (FP16) vs onnxruntime on rknn_input.onnx, sample images, batch 1 each, "
                "both post-processed by rtdetr_cpu.postprocess", "detections": stats,
        # slot by slot, so it includes FP16's near-tied proposal swaps; the detections are the check
        "raw_max_abs_diff_slot_by_slot": {"pred_logits": compare.max_abs_diff(sim["pred_logits"],
                                                                 np.concatenate([o[0] for o in ort_out])),
                             "pred_boxes": compare.max_abs_diff(sim["pred_boxes"],
                                                                np.concatenate([o[1] for o in ort_out]))}})
    job.report.format("rknn", **entry)
    cpu_ops = ", ".join(f"{k} x{v}" for k, v in targets["cpu_ops"].items()) or "none"
    job.info(f"rknn: converted; operators on the CPU: {cpu_ops}; simulator {stats['matched']}/{stats['compared']} "
             f"detections matched")
    if not stats["ok"]:
        job.report.warn(f"rknn: the simulator's detections disagree with onnxruntime ({stats}); no rknn stage is "
                        f"written, so deploy builds no rk3588 SDK from this export")
        return
    shutil.copyfile(Path(rtdetr_cpu.__file__), rdir / "rtdetr_cpu.py")
    io = graph_io(onnx_path)
    Q = int(io["outputs"][0]["shape"][1])
    t = lambda name, shape, dt="float32": {"name": name, "dtype": dt, "shape": shape}  # noqa: E731
    raw = [t("pred_logits", [1, Q, C]), t("pred_boxes", [1, Q, 4])]
    job.stages += [
        {"name": "model_npu", "format": "rknn", "runtime": "rknn", "file": f"rknn/{rknn_file.name}",
         "onnx": "rknn/rknn_input.onnx", "quant": "fp16", "cpu_ops": targets["cpu_ops"],
         "inputs": [{"name": "images", "dtype": "uint8", "shape": [1, S, S, 3], "layout": "NHWC",
                     "meaning": "RGB image resized to SxS (infer_cfg Resize interp); Normalize is folded into the "
                                "graph. rknn/rknn_input.onnx takes the normalised float32 [1,3,S,S] instead"}],
         "outputs": raw},
        {"name": "postprocess", "format": "rknn", "runtime": "cpu", "file": "rknn/rtdetr_cpu.py",
         "function": "postprocess", "args": {"num_top": job.num_top},
         "inputs": raw + [t("orig_target_sizes", [1, 2], "int64")],
         "outputs": [t("labels", [1, job.num_top], "int64"), t("boxes", [1, job.num_top, 4]),
                     t("scores", [1, job.num_top])]},
    ]
