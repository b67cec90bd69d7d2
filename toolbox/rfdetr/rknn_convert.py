"""One rknn-toolkit2 conversion attempt, run as a child process by rknn_step.py.

`python -m toolbox.rfdetr.rknn_convert SPEC.json` loads the ONNX graph, builds it for RK3588 (FP16, the
ImageNet mean/std folded into the graph so that its input is the uint8 RGB image, NHWC), runs the simulator
on the sample images (the simulator only runs a model built in the same process) and exports the .rknn file.

Why a child process: rknn-toolkit2 is closed source and can abort the interpreter on a graph it does not
handle; the export must then record the reason, not die with it. Exit status 0 = converted; 4 = a build
rule failed and the log names the rule to disable (the parent retries without it); anything else = failed.
The verbose log (with rknn-toolkit2's layer table: which operator runs on the NPU and which on the CPU)
goes to SPEC["log"].
"""
from __future__ import annotations

import json
import os
import sys

RULE_FAILED = 4


def main(spec_path: str) -> int:
    import numpy as np

    spec = json.loads(open(spec_path, encoding="utf-8").read())
    from rknn.api import RKNN

    os.chdir(spec["workdir"])  # rknn-toolkit2 writes constant outputs as .npy files into the current folder
    rknn = RKNN(verbose=True)
    rknn.config(mean_values=[spec["mean"]], std_values=[spec["std"]], target_platform=spec["target"],
                disable_rules=list(spec["disable_rules"]))
    if rknn.load_onnx(spec["onnx"]) != 0:
        print("RFEXPORT: load_onnx failed", flush=True)
        return 3
    try:
        ret = rknn.build(do_quantization=False)
    except Exception as exc:  # rknn-toolkit2 raises bare ValueErrors from its rule passes
        print(f"RFEXPORT: build raised {type(exc).__name__}: {str(exc).splitlines()[-1][:300]}", flush=True)
        ret = -1
    if ret != 0:
        print("RFEXPORT: build failed", flush=True)
        return RULE_FAILED
    if rknn.init_runtime() != 0:
        print("RFEXPORT: init_runtime (simulator) failed", flush=True)
        return 3
    images = np.load(spec["inputs"])["images"]
    outs: dict[str, list] = {"pred_logits": [], "pred_boxes": []}
    for img in images:
        got = rknn.inference(inputs=[img[None]], data_format=["nhwc"])
        if got is None or len(got) != 2:
            print(f"RFEXPORT: the simulator returned {None if got is None else len(got)} outputs, 2 expected",
                  flush=True)
            return 3
        outs["pred_logits"].append(np.asarray(got[0], np.float32)[0])
        outs["pred_boxes"].append(np.asarray(got[1], np.float32)[0])
    np.savez(spec["outputs"], **{k: np.stack(v) for k, v in outs.items()})
    tmp = spec["rknn"] + ".tmp"
    if rknn.export_rknn(tmp) != 0:
        print("RFEXPORT: export_rknn failed", flush=True)
        return 3
    os.replace(tmp, spec["rknn"])
    rknn.release()
    print("RFEXPORT: converted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
