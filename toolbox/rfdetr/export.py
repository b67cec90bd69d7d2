"""The export of an RF-DETR run (or .pth weights): model.onnx with the contract's I/O, checked; RKNN attempted.

The driver is the RT-DETR export's (toolbox/export/job.py: steps, events.jsonl, export_report.json,
infer_cfg.yml/json, labels.txt, the temporary folder renamed when whole, exports/<name>.failed/ on a
failed check); only what differs is here:

- the model: the checkpoint loaded into rfdetr's detector (toolbox.rfdetr.model.load_checkpoint), in
  eval mode; the reference outputs are its own forward plus rfdetr's PostProcess (onnx_wrap.py);
- ONNX: traced through rfdetr's own export path (rfdetr.export.prepare.prepare_export_graph freezes the
  DINOv2 position embeddings to S; rfdetr's OnnxExporter switches the model into its export forward and
  runs torch.onnx.export, opset 17) on the detector wrapped with the post-processing (onnx_wrap.py). One
  trace gives the five outputs (labels, boxes, scores, pred_logits, pred_boxes): the raw check runs that
  graph, and model.onnx is the very same graph with the two raw outputs removed;
- the checks are the RT-DETR export's own (toolbox/export/compare.py, tolerances of onnx_export.py);
- formats: onnx (always), rknn (rknn_step.py: converted as far as rknn-toolkit2 goes, reported);
  paddle and onnx-int8 are refused up front by `check_formats`.
"""
from __future__ import annotations

import copy
from pathlib import Path
import numpy as np

from ..errors import InputError, RuntimeFailure, UsageError
from ..export import compare
from ..export.compare import FP32_MATCH
from ..export.job import ExportJob
from ..export.onnx_export import RAW_ATOL, RAW_BOUNDARY_FRACTION, RAW_FLOOR_FACTOR, RAW_NOISE

OPSET = 17        # rfdetr's OnnxConfig default; GridSample needs >= 16
RAW_OUTPUTS = ("pred_logits", "pred_boxes")
OUTPUTS = ("labels", "boxes", "scores")
# infer_cfg Resize interp names the demos accept (cv2 names); rfdetr resizes bilinearly without antialias
INTERP_ALIASES = {"bilinear": "linear", "bicubic": "cubic"}


def check_formats(fmts: list[str]) -> None:
    """UsageError for the formats an RF-DETR export does not write (before any slow work)."""
    if "paddle" in fmts:
        raise UsageError("RF-DETR exports to ONNX; the Paddle format is for the RT-DETR family "
                         "(use --formats onnx, or onnx,rknn)")
    if "onnx-int8" in fmts:
        raise UsageError("--formats onnx-int8 is for the RT-DETR family for now: its per-stage quantization plan "
                         "reads RT-DETR's parameter names (toolbox/export/onnx_int8.py); export RF-DETR with "
                         "--formats onnx")


class RfdetrExportJob(ExportJob):
    """ExportJob for an RF-DETR source: the same driver, files and checks; torch instead of Paddle."""

    def steps(self) -> list[tuple[str, object]]:
        steps: list[tuple[str, object]] = [("model", self.load_model), ("onnx", lambda: export_onnx(self))]
        if "rknn" in self.fmts:
            from .rknn_step import export_rknn

            steps.append(("rknn", lambda: export_rknn(self)))
        steps.append(("files", self.finish))
        return steps

    def load_model(self) -> None:
        import torch

        from .model import check_input_size, load_checkpoint, torch_module, version

        from .dispatch import model_config

        self.cfg = model_config(self.src.model)
        check_input_size(self.cfg, self.src.input_size)
        if not Path(self.src.weights).is_file():
            raise InputError(f"weights file {self.src.weights} does not exist")
        torch.set_grad_enabled(False)
        trained = trained_size(self.cfg, self.src.weights)
        if trained is not None and trained != self.src.input_size:
            raise UsageError(f"{self.src.weights} was trained at {trained} px and RF-DETR's DINOv2 position "
                             f"embeddings are sized to it: export with --input-size {trained} (asked: "
                             f"{self.src.input_size})")
        self.wrapper = load_checkpoint(self.cfg, self.src.num_classes, self.src.weights, input_size=self.src.input_size)
        self.model = torch_module(self.wrapper)
        env = self.report.data["environment"]
        env.update(torch=torch.__version__, rfdetr=version())
        self.report.data["io_convention"] = {
            "name": "RT-DETRv2 (images, orig_target_sizes) -> (labels, boxes, scores), as every family's export",
            "inputs": "images float32 [N,3,S,S] RGB, resized (bilinear) and normalised with ImageNet mean/std as "
                      "infer_cfg.yml's preprocess says; orig_target_sizes int64 [N,2] = (width, height)",
            "outputs": "labels int64 [N,K] (index into label_list; rfdetr's background slot excluded); boxes "
                       "float32 [N,K,4] xyxy original pixels clipped; scores float32 [N,K] sigmoid"}
        self.model_built(int(self.model.num_queries), None)  # RT-DETR's grid/discrete choice does not exist here
        self.ref_dets, self.ref_raw = self.reference(self.X, self.sizes)

    def finish(self) -> None:
        """labels.txt and infer_cfg.yml/json as for RT-DETR, with the input's meaning stated for this family."""
        from ..export.paddle_static import build_infer_cfg, write_infer_cfg
        from ..fileio import write_text

        write_text(self.dir / "labels.txt", "".join(f"{n}\n" for n in self.src.label_list))
        cfg = build_infer_cfg(sampling=self.trained_sampling, stages=self.stages, **self.infer_cfg_base)
        cfg["io"]["inputs"][0]["meaning"] = ("RGB, resized to SxS (no aspect ratio kept, with preprocess Resize's "
                                             "interp), scaled and normalised with preprocess Normalize's mean/std, NCHW")
        write_infer_cfg(self.dir, cfg)

    def reference(self, X: np.ndarray, sizes: np.ndarray) -> tuple[tuple, tuple]:
        """(labels, boxes, scores), (pred_logits, pred_boxes) of the eval-mode PyTorch model."""
        import torch

        from .onnx_wrap import reference_detections

        return reference_detections(self.model, torch.from_numpy(X), torch.from_numpy(sizes),
                                    self.src.num_classes, self.num_top)

    def _preprocess_params(self) -> dict:
        """infer_cfg's Normalize and Resize of the variant (pipelines/ `preprocess`: rfdetr's ImageNet mean/std,
        bilinear), with the interp named as the demos name it."""
        section = self.cfg.get("preprocess") or {}
        pre, resize = section.get("normalize") or {}, section.get("resize") or {}
        if not pre.get("mean") or not pre.get("std"):
            raise InputError(f"{self.src.model_name}: the config's preprocess.normalize lacks mean/std "
                             f"(RF-DETR normalises with ImageNet's)")
        interp = str(resize.get("interp") or "linear").lower()
        return {"mean": list(pre["mean"]), "std": list(pre["std"]), "interp": INTERP_ALIASES.get(interp, interp)}


def trained_size(cfg: dict, weights: str) -> int | None:
    """The square resolution a checkpoint's DINOv2 position embeddings were sized to (1 class token + (S/p)^2
    patch tokens, p the variant's patch size), None when the checkpoint does not tell."""
    import math

    from .model import _default, config_class, read_checkpoint

    pos = read_checkpoint(weights)["model"].get("backbone.0.encoder.encoder.embeddings.position_embeddings")
    if pos is None or pos.ndim != 3:
        return None
    side = math.isqrt(int(pos.shape[1]) - 1)
    if side * side != int(pos.shape[1]) - 1:
        return None
    return side * int(_default(config_class(cfg), "patch_size"))


def trace_onnx(job, out_path: Path, *, raw_outputs: bool = False, raw_only: bool = False) -> Path:
    """The detector wrapped with its post-processing (dynamic N), or with `raw_only` the detector up to its raw
    outputs (batch 1, for rknn-toolkit2), traced through rfdetr's export path into out_path."""
    import torch
    from rfdetr.export._onnx.exporter import OnnxConfig, OnnxExporter
    from rfdetr.export.prepare import ExportGraph, prepare_export_graph

    from ..export.tools import output_to
    from .onnx_wrap import make_deploy_module, make_raw_module

    s = int(job.src.input_size)
    net = copy.deepcopy(job.model)   # prepare/export mutate the module: the reference keeps its own
    with output_to(job.log):
        graph = prepare_export_graph(net, job.wrapper.model_config, shape=(s, s), device="cpu",
                                     dynamic_batch=not raw_only)
    if raw_only:
        wrapped = ExportGraph(model=make_raw_module(graph.model, job.src.num_classes),
                              input_tensors=torch.from_numpy(job.X[:1]), input_names=("images",),
                              output_names=RAW_OUTPUTS, dynamic_axes=None, shape=(s, s), backbone_only=False)
    else:
        deploy = make_deploy_module(graph.model, job.src.num_classes, job.num_top, raw_outputs=raw_outputs)
        names = OUTPUTS + (RAW_OUTPUTS if raw_outputs else ())
        example = (torch.from_numpy(job.X[:1]), torch.from_numpy(job.sizes[:1]))
        wrapped = ExportGraph(model=deploy, input_tensors=example, input_names=("images", "orig_target_sizes"),
                              output_names=names,
                              dynamic_axes={n: {0: "N"} for n in ("images", "orig_target_sizes") + names},
                              shape=(s, s), backbone_only=False)
    exporter = OnnxExporter(OnnxConfig(output_dir=out_path.parent, output_name=out_path.stem, opset_version=OPSET,
                                       verbose=False))
    try:
        with output_to(job.log):
            written = Path(exporter(wrapped))
    except Exception as exc:  # torch.onnx raises many types; all mean the same here
        raise RuntimeFailure(f"rfdetr's ONNX export failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); see {job.log}") from None
    if written != out_path:
        written.replace(out_path)
    return out_path


def drop_outputs(src: Path, dst: Path, names: tuple[str, ...], num_top: int) -> Path:
    """`src` without the graph outputs `names` (their nodes stay: post-processing consumes them), with K
    written as the fixed size it is (the tracer names it symbolically: only N is dynamic, CONTRACTS)."""
    import onnx

    model = onnx.load(str(src))
    keep = [o for o in model.graph.output if o.name not in names]
    for o in keep:
        if o.name in OUTPUTS:
            dim = o.type.tensor_type.shape.dim[1]
            dim.ClearField("dim_param")
            dim.dim_value = int(num_top)
    del model.graph.output[:]
    model.graph.output.extend(keep)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    return dst


def compare_raw(ref_logits, ref_boxes, logits, boxes, *, atol: float, boundary: int) -> dict:
    """The raw comparison of RF-DETR's outputs [N,Q,C+1] / [N,Q,4], image by image.

    Why not RT-DETR's query pairing alone: an RF-DETR decoder query is a slot-specific content embedding
    (`query_feat`) placed at the box of the encoder's i-th best proposal. When two proposals' encoder scores
    are near-tied (~1e-6 apart) and swap ranks between runtimes, those two slots get each other's box while
    keeping their content, and through the decoder's self-attention every other query of that image moves
    too (measured: 1e-3..4e-3 in logits, seeded RF-DETR-N at 384). No pairing makes such an image equal. So:
    - an image whose proposals kept their order (every slot's box within atol): every slot within atol in
      logits and boxes, slot by slot: the strict check, which at least one image must get;
    - an image with a rank swap: the same proposals were selected (compare.paired_raw_diff pairing by box:
      unpaired only at the selection boundary) and its detections are matched (see export_onnx).
    """
    rl, rb, cl, cb = (np.asarray(x, np.float64) for x in (ref_logits, ref_boxes, logits, boxes))
    strict, swapped, logit_diff, box_diff, proposals_ok = [], [], 0.0, 0.0, True
    moved_slots = []
    for n in range(rb.shape[0]):
        slot_box = np.abs(rb[n] - cb[n]).max(-1)
        moved = int(np.sum(slot_box > atol))
        moved_slots.append(moved)
        if moved == 0:
            strict.append(n)
            logit_diff = max(logit_diff, float(np.abs(rl[n] - cl[n]).max()))
            box_diff = max(box_diff, float(slot_box.max()))
        else:
            swapped.append(n)
            by_box = compare.paired_raw_diff(rl[n:n + 1], rb[n:n + 1], cl[n:n + 1], cb[n:n + 1], atol=atol,
                                             boundary=boundary)
            proposals_ok &= by_box["unpaired_inside"] == 0
    ok = bool(strict and logit_diff <= atol and box_diff <= atol and proposals_ok)
    return {"pred_logits": logit_diff, "pred_boxes": box_diff, "ok": ok, "strict_images": strict,
            "rank_swap_images": swapped, "moved_slots": moved_slots, "same_proposals": bool(proposals_ok)}


# detections of an image with a proposal rank swap (compare_raw): every query moved by up to ~4e-3 in logits,
# i.e. scores by <= 0.25 x 4e-3 = 1e-3 (sigmoid's slope is at most 1/4), so 5e-3 leaves margin; boxes stay
# sub-pixel (IoU 0.99). Reference detections of the moved slots themselves may go unmatched (one a slot).
SWAP_MATCH = {"iou_min": 0.99, "score_tol": 5e-3}


def match_detections(job, ref, cand, raw: dict) -> dict:
    """FP32_MATCH on images without a rank swap, SWAP_MATCH (with one miss per moved slot) on the others."""
    per_image, ok = [], True
    for i in range(len(ref[0])):
        tol = SWAP_MATCH if i in raw["rank_swap_images"] else FP32_MATCH
        st = compare.match_detections(tuple(r[i] for r in ref), tuple(c[i] for c in cand), **tol)
        ok &= st.compared - st.matched <= raw["moved_slots"][i]
        per_image.append(st)
    merged = compare.merge(per_image).to_dict()
    merged.update(ok=bool(ok), iou_min=FP32_MATCH["iou_min"], score_tol=FP32_MATCH["score_tol"],
                  rank_swap_tolerance=SWAP_MATCH)
    return merged


def export_onnx(job) -> None:
    """model.onnx, checked against the eval-mode PyTorch model: raw outputs (compare_raw) within the RT-DETR
    export's tolerance (max(1e-4, 3 x the model's own rounding floor); onnx_export.py says why) and final
    detections matched by IoU (FP32_MATCH: IoU >= 0.99, |dscore| <= 1e-3: float reassociation only)."""
    from ..export.onnx import graph_io, op_counts, session

    full = trace_onnx(job, job.work / "full.onnx", raw_outputs=True)
    path = drop_outputs(full, job.dir / "model.onnx", RAW_OUTPUTS, job.num_top)
    out = session(full).run(None, {"images": job.X, "orig_target_sizes": job.sizes})
    final, raw = tuple(out[:3]), tuple(out[3:])
    boundary = max(1, round(RAW_BOUNDARY_FRACTION * raw[0].shape[1]))
    floor = raw_noise_floor(job, boundary)
    atol = max(RAW_ATOL, RAW_FLOOR_FACTOR * floor)
    paired = compare_raw(job.ref_raw[0], job.ref_raw[1], raw[0], raw[1], atol=atol, boundary=boundary)
    diffs = {"pred_logits": paired["pred_logits"], "pred_boxes": paired["pred_boxes"]}
    published = session(path).run(None, {"images": job.X, "orig_target_sizes": job.sizes})
    same = all(np.array_equal(a, b) for a, b in zip(published, final))
    stats = match_detections(job, job.ref_dets, final, paired)
    passed = bool(paired["ok"] and stats["ok"] and same)
    counts = op_counts(path)
    io = graph_io(path)
    job.report.format("onnx", files=["model.onnx"], passed=passed, opset=OPSET, io=io, nodes=int(sum(counts.values())),
                      grid_sample=int(counts.get("GridSample", 0)), topk=int(counts.get("TopK", 0)),
                      exporter="rfdetr.export (prepare_export_graph + OnnxExporter, torch.onnx.export) on "
                               "toolbox.rfdetr.onnx_wrap.DeployRFDETR",
                      check={"what": "onnxruntime vs PyTorch (eval mode, rfdetr's PostProcess on the foreground "
                                     f"classes) on the sample images, batch {len(job.samples)} (dynamic N)",
                             "raw_max_abs_diff": diffs, "raw_comparison": paired, "raw_atol": atol,
                             "raw_atol_base": RAW_ATOL, "raw_noise_floor": floor, "raw_floor_factor": RAW_FLOOR_FACTOR,
                             "detections": stats, "model_onnx_equals_checked_graph": same})
    job.stages.append({"name": "model", "format": "onnx", "runtime": "onnxruntime", "file": "model.onnx",
                       "inputs": io["inputs"], "outputs": io["outputs"]})
    job.info(f"onnx: raw max abs diff logits {diffs['pred_logits']:.2e}, boxes {diffs['pred_boxes']:.2e} "
             f"({len(paired['strict_images'])} of {len(job.samples)} images slot by slot); detections min IoU "
             f"{stats['min_iou']:.4f}")
    if not passed:
        raise RuntimeFailure(f"ONNX parity failed: raw outputs {paired} (tolerance {atol:.3g}: "
                             f"max({RAW_ATOL}, {RAW_FLOOR_FACTOR} x the model's own floor {floor:.3g})), "
                             f"detections {stats}, model.onnx equals the checked graph: {same}")


def raw_noise_floor(job, boundary: int) -> float:
    """Max paired |Δlogit| of the eval-mode model between the samples and the samples plus uniform noise of
    RAW_NOISE (one float32 ulp of the inputs; seeded): how far rounding alone moves this model's logits."""
    noise = np.random.default_rng(0).uniform(-RAW_NOISE, RAW_NOISE, job.X.shape).astype(np.float32)
    _, (logits, boxes) = job.reference(job.X + noise, job.sizes)
    # slot by slot on the images whose proposals kept their order (compare_raw; a box moved by 1e-2 is a swap):
    # one ulp of input moves the outputs of such an image by a few ulps of the model's own conditioning
    moved = compare_raw(job.ref_raw[0], job.ref_raw[1], logits, boxes, atol=1e-2, boundary=boundary)
    return float(moved["pred_logits"])

