// The CPU side of the RK3588 split (infer_cfg "stages" with runtime "cpu"): the two top-k steps of
// RT-DETR that the NPU cannot run. Shared by the RKNN demo and the ONNX Runtime demos, so the tests that
// run the ONNX Runtime fallback exercise this very code. Same numbers as rtdetr_cpu.py of the export.
#pragma once

#include "common.hpp"

namespace sdk {

// Runs the cpu stage `st` (its `function`) on the named tensors in `t`, adding its outputs to `t`.
void run_cpu_stage(const Stage& st, TensorMap& t);

// Query selection: enc_memory [1,L,D], enc_logits [1,L,C], enc_boxes_unact [1,L,4] → the num_queries
// positions with the highest class logit: target [1,Q,D], ref_unact [1,Q,4].
void select_queries(const Tensor& enc_memory, const Tensor& enc_logits, const Tensor& enc_boxes_unact,
                    int num_queries, Tensor& target, Tensor& ref_unact);

// Post-processing: logits [1,Q,C], normalised cxcywh boxes [1,Q,4], orig_target_sizes [1,2] (w,h)
// → labels [1,K] int64, boxes [1,K,4] xyxy pixels clipped, scores [1,K] (sigmoid), K = min(num_top, Q*C).
void postprocess(const Tensor& logits, const Tensor& boxes, const Tensor& sizes, int num_top,
                 Tensor& labels, Tensor& out_boxes, Tensor& scores);

}  // namespace sdk
