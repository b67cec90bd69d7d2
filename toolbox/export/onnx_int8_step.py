"""The export job's `onnx_int8` step: model.onnx -> model_int8.onnx, chosen and checked by accuracy.

What it does (the measuring itself is in onnx_int8.py):
- the graph prepared for quantization (onnx_int8.prepare: BatchNorm folded into Conv, shapes inferred);
- calibration on up to `calib_size` train-split images (default 200), preprocessed as the export's own
  checks do (infer_cfg's Resize and Normalize), batch 1;
- per-stage sensitivity on up to 16 val images, then plans from the most quantized down (onnx_int8.py);
- the accuracy check: AP and AP50 of model.onnx and of the INT8 graph on the val split (at most the
  export's val_limit images), through engine/evaluate.py's COCO evaluation; a plan passes when the AP
  drop is <= max_ap_drop (and, when FP32 AP is too low to judge, when its detections agree with FP32's);
  no passing plan -> RuntimeFailure (exit 3), with every plan's figures in export_report.json.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, RuntimeFailure
from . import onnx_int8 as Q

DEFAULT_MAX_AP_DROP = 0.010   # COCOeval's 0-1 scale: one AP point (issue 16)


class Int8Export:
    def __init__(self, job, max_ap_drop: float = DEFAULT_MAX_AP_DROP):
        self.job = job
        self.max_ap_drop = float(max_ap_drop)

    def _feeds(self, paths) -> tuple[np.ndarray, np.ndarray]:
        from .runtime import load_image

        return self.job.preprocess([load_image(p) for p in paths])

    def run(self) -> None:
        job = self.job
        if job.src.dataset_dir is None:
            raise InputError("onnx-int8 calibrates on a dataset's train split and checks AP on its val split; "
                             "no dataset is known for these weights (pass --dataset NAME)")
        fp32 = job.dir / "model.onnx"
        prepared = Q.prepare(fp32, job.work / "model_prepared.onnx")   # what is calibrated and quantized
        calib_n = job.int8_calib_size or Q.DEFAULT_CALIB_SIZE
        calib_paths = job.dataset_images("train", calib_n)
        if not calib_paths:
            raise InputError(f"{job.src.dataset_dir} has no train-split images to calibrate INT8 on")
        X, sizes = self._feeds(calib_paths)
        feeds = [{"images": X[i:i + 1], "orig_target_sizes": sizes[i:i + 1]} for i in range(len(X))]
        job.info(f"onnx_int8: calibrating on {len(feeds)} train images")
        ranges = Q.calibrate(prepared, feeds)
        del feeds, X
        stages_of = Q.carry_stages(Q.node_stages(fp32, Q.param_stages(job.export_model.named_parameters())), prepared)
        counts = {s: sum(1 for v in stages_of.values() if v == s) for s in Q.STAGES}

        sens_paths = job.dataset_images("val", Q.SENSITIVITY_IMAGES) or job.dataset_images("train", Q.SENSITIVITY_IMAGES)
        SX, Ssizes = self._feeds(sens_paths)
        ref = Q.run_graph(fp32, SX, Ssizes)
        sens = Q.sensitivity(prepared, job.work, ranges, stages_of, SX, Ssizes, ref)
        job.info("onnx_int8: stage alone in INT8 -> matched fraction of FP32 detections: "
                 + ", ".join(f"{s} {v['matched_fraction']:.3f}" for s, v in sens.items()))

        from ..data.loader import CocoDetection

        val = CocoDetection(job.src.dataset_dir, "val")
        fp32_ap = Q.coco_ap(fp32, val, job.preprocess, job.val_limit)
        judgeable = fp32_ap["AP"] >= Q.JUDGE_MIN_AP
        plans, chosen = Q.plans_by_sensitivity(sens), None
        out = job.dir / "model_int8.onnx"
        for plan in plans:
            path = Q.quantize_with_ranges(prepared, job.work / "plan.onnx", ranges, plan.exclude(stages_of))
            plan.agreement = Q.agreement(ref, Q.run_graph(path, SX, Ssizes))
            plan.ap = Q.coco_ap(path, val, job.preprocess, job.val_limit)
            drop = fp32_ap["AP"] - plan.ap["AP"]
            plan.ap["ap_drop"] = round(drop, 6)
            plan.ap["passed"] = Q.plan_passes(plan, self.max_ap_drop, judgeable)
            job.info(f"onnx_int8: INT8 {'+'.join(plan.quantized)}: AP {plan.ap['AP']:.4f} (FP32 {fp32_ap['AP']:.4f}), "
                     f"matched {plan.agreement['matched_fraction']:.3f}")
            if plan.ap["passed"]:
                chosen = plan
                path.replace(out)
                break
        fallback = None if chosen or judgeable else Q.most_faithful(plans, self.max_ap_drop)
        if fallback:
            # AP cannot judge and no plan reached MIN_MATCHED (an untrained model's near-tied scores reorder
            # under any perturbation): keep the plan that agrees best and say so
            chosen = fallback
            chosen.ap["passed"] = True
            Q.quantize_with_ranges(prepared, out, ranges, chosen.exclude(stages_of))
            job.report.warn(f"onnx_int8: no plan kept {Q.MIN_MATCHED:.0%} of FP32's detections; kept the one that "
                            f"agrees best (INT8 {'+'.join(chosen.quantized)}, matched "
                            f"{chosen.agreement['matched_fraction']:.3f})")
        tried = [p.to_dict() for p in plans if p.agreement is not None]
        entry = {
            "files": ["model_int8.onnx"] if chosen else [], "passed": chosen is not None, "recipe": dict(Q.RECIPE),
            "calibration": {"split": "train", "images": len(calib_paths), "calib_size": calib_n},
            "stage_nodes": counts, "stage_ranges": Q.stage_ranges(stages_of), "sensitivity": {"what": "each stage alone in INT8 on "
                                                           f"{len(sens_paths)} images: share of FP32's top-"
                                                           f"{Q.AGREEMENT_TOP} detections matched (IoU >= "
                                                           f"{Q.MATCH['iou_min']}, |dscore| <= {Q.MATCH['score_tol']})",
                                                   "stages": sens},
            "plans": tried, "chosen_by": ("val AP" if judgeable else
                                          ("detection agreement" if not fallback else "best detection agreement")),
            "quantized": chosen.quantized if chosen else [],
            "kept_fp32": chosen.kept if chosen else list(Q.STAGES),
            "check": {"what": "COCO AP on the val split (engine/evaluate.py), FP32 model.onnx vs INT8",
                      "fp32": fp32_ap, "int8": (chosen or plans[-1]).ap, "max_ap_drop": self.max_ap_drop,
                      "ap_drop": (chosen or plans[-1]).ap["ap_drop"], "judgeable": judgeable,
                      "judge_min_ap": Q.JUDGE_MIN_AP, "min_matched_when_not_judgeable": Q.MIN_MATCHED},
        }
        if not judgeable:
            msg = (f"onnx_int8: the FP32 model's val AP is {fp32_ap['AP']:.4f} (< {Q.JUDGE_MIN_AP}): the AP check "
                   f"cannot judge INT8 accuracy on a model that has not learned; the plan was chosen by detection "
                   f"agreement with FP32 only")
            entry["warning"] = msg
            job.report.warn(msg)
            job.info("WARNING " + msg)
        if chosen:
            from .onnx import graph_io

            entry["io"] = graph_io(out)
            job.stages.append({"name": "model", "format": "onnx_int8", "runtime": "onnxruntime",
                               "file": "model_int8.onnx", "inputs": entry["io"]["inputs"],
                               "outputs": entry["io"]["outputs"]})
        job.report.format("onnx_int8", **entry)
        if not chosen:
            last = plans[-1]
            raise RuntimeFailure(
                f"INT8 accuracy check failed: no quantization plan holds AP drop <= {self.max_ap_drop} "
                f"(FP32 AP {fp32_ap['AP']:.4f}; least quantized plan, INT8 {'+'.join(last.quantized)}: AP "
                f"{last.ap['AP']:.4f}, matched {last.agreement['matched_fraction']:.3f})")
        job.info(f"onnx_int8: INT8 stages {', '.join(chosen.quantized)}; FP32 kept: {', '.join(chosen.kept) or 'none'}")
