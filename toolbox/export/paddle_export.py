"""The Paddle step of an export: the deploy model saved as a Paddle inference program, and its check.

The program is always saved (ONNX and RKNN are converted from it); it is shipped as paddle/ only when
the paddle format was asked for, and then checked: Paddle Inference (oneDNN off) runs it on the sample
images and its detections must match the eval-mode model's (FP32_MATCH).
"""
from __future__ import annotations

from ..errors import RuntimeFailure
from .compare import FP32_MATCH
from .paddle_static import paddle_stage, save_paddle


def export_paddle(job) -> None:
    """Save job.deploy as paddle/ (or .work/paddle/ when not shipped) and check it when shipped."""
    shipped = "paddle" in job.fmts
    pdir = job.dir / "paddle" if shipped else job.work / "paddle"
    save_paddle(job.deploy, pdir, job.src.input_size)
    job.paddle_dir = pdir
    if not shipped:
        return
    from .runtime import paddle_predictor, run_paddle

    pred = paddle_predictor(pdir / "model.json", pdir / "model.pdiparams")
    outs = run_paddle(pred, [job.X, job.sizes])
    stats = job.match(job.ref_dets, outs, FP32_MATCH)
    passed = stats["ok"]
    job.report.format("paddle", files=["paddle/model.json", "paddle/model.pdiparams"], passed=passed,
                      check={"what": "Paddle Inference (oneDNN off) vs the eval-mode model, detections matched "
                                     "by IoU", "images": len(job.samples), **stats})
    job.stages.append(paddle_stage(job.src.input_size, job.num_top))
    job.info(f"paddle: Paddle Inference matches the model (min IoU {stats['min_iou']:.4f})")
    if not passed:
        raise RuntimeFailure(f"Paddle Inference disagrees with the model beyond tolerance: {stats}")
