"""`python -m toolbox export`: options of CONTRACTS.md, mapped onto toolbox.export.api.export."""
from __future__ import annotations

import argparse

from ..errors import UsageError


def register(sub, common) -> None:
    p = sub.add_parser(
        "export", parents=[common], help="export a trained model: Paddle inference, ONNX (FP32, INT8 for CPUs), RK3588 RKNN",
        description="Export a run's checkpoint (or weights trained elsewhere) to exports/<name>/, checking each "
                    "format against the model on a few real images (exit 3 when a check fails).")
    src = p.add_argument_group("what to export")
    src.add_argument("--run", help="training run name or folder")
    src.add_argument("--weights", default=None,
                     help="best | last | PATH.pdparams (with --run; default best), or PATH/URL (with --model)")
    src.add_argument("--model", help="model name (pipelines/<NAME>.yaml, e.g. RT-DETR-R18) or YAML, for weights "
                                     "trained elsewhere")
    src.add_argument("--num-classes", type=int, help="class count of the weights (with --model)")
    src.add_argument("--dataset", help="workspace dataset for INT8 calibration (train split) and the INT8 accuracy "
                                       "check (val split) when the weights come without a run (with --model)")
    src.add_argument("--labels", help="file with one class name a line (default: the run's; class_0.. otherwise)")
    out = p.add_argument_group("output")
    out.add_argument("--name", help="export name (default: the run's, or the weights file's stem)")
    out.add_argument("--formats", default=None, help="comma separated: paddle,onnx,onnx-int8,rknn (default paddle,onnx; "
                          "RF-DETR: onnx, its only format besides rknn); onnx-int8 writes "
                          "model_int8.onnx for CPUs (adds onnx, its FP32 reference)")
    out.add_argument("--input-size", type=int, help="square input size S (default: the run's / model's)")
    out.add_argument("--fp16-onnx", action="store_true", help="also write model_fp16.onnx (GPUs)")
    out.add_argument("--rknn-quant", choices=("fp16", "int8"), default="fp16",
                     help="RKNN precision: fp16 (default) or int8 (encoder INT8, decoder FP16)")
    out.add_argument("--calib-size", type=int, default=None,
                     help="INT8 calibration images from the training set (default: 32 for rknn, 200 for onnx-int8; "
                          "all when the set is smaller)")
    out.add_argument("--int8-max-ap-drop", type=float, default=0.010,
                     help="onnx-int8 fails (exit 3) when val AP drops by more than this (COCOeval 0-1 scale; "
                          "default 0.010 = one AP point)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .api import export

    if args.run and args.model:
        raise UsageError("give either --run or --model, not both")
    weights = args.weights if args.weights is not None else ("best" if args.run else None)
    out = export(run=args.run, weights=weights, model=args.model, num_classes=args.num_classes, labels=args.labels,
                 name=args.name, formats=args.formats, input_size=args.input_size, fp16_onnx=args.fp16_onnx,
                 rknn_quant=args.rknn_quant, calib_size=args.calib_size, workspace=args.workspace,
                 dataset=args.dataset, int8_max_ap_drop=args.int8_max_ap_drop)
    print(f"exported to {out}")
    return 0
