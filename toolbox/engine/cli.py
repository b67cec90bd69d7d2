"""`python -m toolbox train | eval | predict`: the options of CONTRACTS.md, each passed to toolbox.engine.api."""
from __future__ import annotations

import argparse
import sys

TRAIN_EPILOG = """\
examples:
  python -m toolbox train --dataset bccd --model RT-DETR-R18 --epochs 50 --batch-size 4
  python -m toolbox train --dataset bccd --model RT-DETR-R18 --pretrained none --max-steps 20   # smoke run
  python -m toolbox train --run my-run --resume                      # continue a run exactly
  python -m toolbox train --dataset bccd --model RT-DETRv2-R18 --init-from my-run --sampling discrete
  python -m toolbox train --dataset bccd --model RF-DETR-N --epochs 20 --batch-size 4 --grad-accum-steps 4  # rfdetr
  python -m toolbox train --dataset bccd --model RT-DETR-R50 --device gpu:0,1 --amp   # 2 GPUs (launcher)
  python -m paddle.distributed.launch --nproc_per_node 2 toolbox/engine/launch_entry.py train ...  # by hand

Hyper-parameters not given here come from the model's pipelines/<MODEL>.yaml recipe; everything used is
written to runs/<run>/config.yaml. Progress goes to the terminal (tqdm), runs/<run>/events.jsonl and train.log.
Exit codes: 0 ok, 1 bad dataset, 2 bad options, 3 runtime failure (offline download, NaN loss, out of
memory), 130 cancelled."""


def positive_float(text: str) -> float:
    """argparse type of --lr: a rate of 0 (or below) trains nothing, and says so before the run starts."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _train(sub, common)
    _eval(sub, common)
    _predict(sub, common)


def _train(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train an RT-DETR or RF-DETR model on a workspace dataset",
                       description="Train (or fine-tune) an RT-DETR (Paddle) or RF-DETR (rfdetr, PyTorch) detector; "
                                   "the model's pipelines/ file says which (backend). Writes runs/<run>/ with config.yaml, "
                                   "events.jsonl, train.log and checkpoints/{last,best}/.",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--dataset", metavar="NAME|DIR", help="a dataset imported with `check` (name in workspace/"
                   "datasets/) or a folder in the PaddleX COCO layout")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--model", metavar="NAME", help="a model of pipelines/ (e.g. RT-DETR-R18, RT-DETRv2-R50, RF-DETR-N)")
    m.add_argument("--config", metavar="FILE", help="a model YAML file instead of a pipelines/ name")
    g.add_argument("--run", metavar="NAME", help="run name: folder under workspace/runs/ (default: MODEL-DATE-TIME)")
    g.add_argument("-o", "--override", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a configuration value, repeatable: train.* / augment.* keys of config.yaml "
                        "(e.g. -o train.weight_decay=0), or model keys (e.g. -o transformer.eval_idx=2, "
                        "-o num_queries=100)")
    s = p.add_argument_group("schedule")
    s.add_argument("--epochs", type=int, help="number of epochs (default: the model recipe's)")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke runs, demos)")
    s.add_argument("--batch-size", type=int, help="images per device per step (default: the recipe's per-GPU batch)")
    s.add_argument("--grad-accum-steps", type=int,
                   help="accumulate gradients over N batches per optimizer step (effective batch = batch x N x devices)")
    s.add_argument("--lr", type=positive_float, help="base learning rate for the recipe's global batch (16 for the published "
                   "recipes); scaled linearly to your effective batch, the value used is logged")
    s.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up length in optimizer steps")
    s.add_argument("--seed", type=int, help="random seed (data order, augmentation, initialisation)")
    w = p.add_argument_group("weights")
    w.add_argument("--pretrained", metavar="URL|PATH|none",
                   help="initial weights (default: the model's official COCO checkpoint; `none`: from scratch)")
    w.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="continue a run exactly (optimizer, EMA, schedule, step, RNG); without a value: the last "
                        "checkpoint of --run")
    w.add_argument("--init-from", metavar="RUN|PATH",
                   help="start from another run's (best) weights or a checkpoint, weights only")
    h = p.add_argument_group("model and hardware")
    h.add_argument("--input-size", type=int, metavar="S", help="square training/eval size: a multiple of 32 (RT-DETR) or of the RF-DETR "
                   "size's patch size x windows, read from the installed rfdetr (an invalid size names the multiple)")
    h.add_argument("--sampling", choices=("grid", "discrete"),
                   help="decoder cross-attention sampling: grid (grid_sample) or discrete (RT-DETRv2, NPU-friendly)")
    h.add_argument("--device", default=None, metavar="cpu|gpu|gpu:0,1",
                   help="device; several GPUs start paddle.distributed.launch for you (default: cpu)")
    h.add_argument("--amp", action="store_true", default=None, help="automatic mixed precision (GPU only)")
    h.add_argument("--num-workers", type=int, help="data-loading threads (0: in the training thread)")
    e = p.add_argument_group("evaluation, checkpoints, logging")
    e.add_argument("--eval-interval", type=int, metavar="EPOCHS", help="evaluate on val every N epochs (and at the end)")
    e.add_argument("--save-interval", type=int, metavar="EPOCHS", help="write checkpoints/last every N epochs "
                   "(and at the end)")
    e.add_argument("--log-interval", type=int, metavar="STEPS", help="write a log event every N optimizer steps")
    e.add_argument("--early-stop-patience", type=int, metavar="EVALS",
                   help="stop after N evaluations without a better AP (0: never)")
    e.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.set_defaults(func=run_train)


def _eval(sub, common) -> None:
    p = sub.add_parser("eval", parents=[common], help="COCO-evaluate a run or weights on a dataset's val split",
                       description="COCO evaluation (pycocotools): the 12-number table, per-class AP/AP50, PR curves "
                                   "and drawn predictions in runs/<run>/eval/ (metrics.json, pr_curves/, vis/).")
    p.add_argument("--run", metavar="NAME", help="a training run (its config says model, classes, input size)")
    p.add_argument("--model", metavar="NAME", help="a pipelines/ model, with --weights PATH and --dataset")
    p.add_argument("--weights", default=None, metavar="best|last|PATH",
                   help="which weights: a run's best (default) or last checkpoint, or a checkpoint folder/.pdparams (RF-DETR: model.pth)")
    p.add_argument("--dataset", metavar="NAME|DIR", help="dataset (default: the run's)")
    p.add_argument("--split", default="val", choices=("val", "test", "train"), help="split to evaluate (default val)")
    p.add_argument("--input-size", type=int, metavar="S", help="evaluation size (default: the run's)")
    p.add_argument("--batch-size", type=int, default=2, help="images per forward pass")
    p.add_argument("--device", default="cpu", metavar="cpu|gpu|gpu:N", help="device (default cpu)")
    p.add_argument("--vis-count", type=int, default=8, help="images to draw predictions on")
    p.add_argument("--threshold", type=float, default=0.5, help="score threshold of the drawn predictions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def _predict(sub, common) -> None:
    p = sub.add_parser("predict", parents=[common], help="detect objects in images, folders or videos",
                       description="Run a trained run, an export (ONNX Runtime) or weights on images, folders or "
                                   "video files; writes one JSON per input (PaddleX's result shape: boxes "
                                   "[{cls_id, label, score, coordinate}]) and drawn images/videos.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or video files")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="NAME", help="a training run (its best checkpoint unless --weights)")
    src.add_argument("--export", metavar="NAME|DIR", help="an export folder (runs model.onnx with ONNX Runtime)")
    src.add_argument("--model", metavar="NAME", help="a pipelines/ model, with --weights PATH (and --labels/--num-classes)")
    p.add_argument("--weights", metavar="best|last|PATH", help="with --run: best (default) or last; with --model: a path")
    p.add_argument("--labels", metavar="FILE", help="with --model: labels.txt (one class name a line)")
    p.add_argument("--num-classes", type=int, help="with --model and no --labels: the class count")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score of the boxes kept (default 0.5)")
    p.add_argument("--input-size", type=int, metavar="S", help="with --run/--model: inference size")
    p.add_argument("--out", metavar="DIR", help="output folder (default: workspace/predictions/<time>/)")
    p.add_argument("--device", default="cpu", metavar="cpu|gpu", help="device for --run/--model (default cpu)")
    p.add_argument("--backend", default="onnxruntime",
                   choices=("onnxruntime", "onnxruntime-fp16", "onnxruntime-int8", "paddle", "rknn-onnx"),
                   help="with --export: which exported format runs (default onnxruntime on model.onnx)")
    p.add_argument("--video-stride", type=int, default=1, help="predict every N-th video frame")
    p.set_defaults(func=run_predict)


def run_train(args) -> int:
    from . import distributed as D
    from .api import train

    opts = {k: getattr(args, k) for k in (
        "dataset", "model", "config", "run", "overrides", "epochs", "max_steps", "batch_size", "grad_accum_steps",
        "lr", "warmup_steps", "seed", "pretrained", "resume", "init_from", "input_size", "sampling", "device",
        "amp", "num_workers", "eval_interval", "save_interval", "log_interval", "early_stop_patience")}
    if args.device and D.needs_launch(args.device) and not _is_rfdetr(args, opts):
        return _relaunch(args, opts)  # (RF-DETR: one device; toolbox.rfdetr says so for gpu:0,1)
    run_dir = train(workspace=args.workspace, progress=not args.no_progress, **opts)
    print(run_dir)
    return 0


def _is_rfdetr(args, opts) -> bool:
    from .api import _family

    return _family(args.workspace, model=opts.get("model"), config=opts.get("config"), run=opts.get("run"),
                   resume=opts.get("resume")) == "rfdetr"


def _relaunch(args, opts) -> int:
    """`--device gpu:0,1`: fix the run name, then run the same command under paddle.distributed.launch."""
    from . import config as C
    from . import distributed as D
    from .train import resolve_model_source

    _, ids = D.parse_device(args.device)
    argv = list(sys.argv[1:])
    if not opts.get("run"):
        name = resolve_model_source(opts.get("model"), opts.get("config"))[0]
        argv += ["--run", C.default_run_name(name)]
    if "--workspace" not in argv:
        argv = ["--workspace", str(args.workspace.root), *argv]
    run = argv[argv.index("--run") + 1]
    return D.relaunch(argv, ids, args.workspace.runs / run / "launch_logs")


def run_eval(args) -> int:
    from .api import evaluate

    report = evaluate(run=args.run, model=args.model, weights=args.weights, dataset=args.dataset, split=args.split,
                      input_size=args.input_size, batch_size=args.batch_size, device=args.device,
                      vis_count=args.vis_count, threshold=args.threshold, workspace=args.workspace,
                      progress=not args.no_progress)
    m = report["metrics"]
    print(report.get("summary") or "")
    print(" ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in m.items()))
    print(report["path"])
    return 0


def run_predict(args) -> int:
    from .api import predict

    results = predict(args.inputs, run=args.run, export=args.export, model=args.model, weights=args.weights,
                      labels=args.labels, num_classes=args.num_classes, threshold=args.threshold,
                      input_size=args.input_size, out=args.out, device=args.device,
                      video_stride=args.video_stride, backend=args.backend, workspace=args.workspace)
    for r in results:
        n = len(r.get("boxes", [])) if "boxes" in r else sum(len(f["boxes"]) for f in r.get("frames", []))
        print(f"{r['input_path']}: {n} boxes -> {r['json_path']}")
    return 0
