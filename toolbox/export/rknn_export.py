"""The RKNN step of an export: the RK3588 split, its graphs, builds and simulator verification.

Which op runs where (written to infer_cfg.yml `stages`, format rknn, and to export_report.json):

  stage           runs on   file                              what
  encoder         NPU       rknn/encoder_rk3588_<q>.rknn      backbone, hybrid encoder, input projections,
                                                              encoder heads (from rknn/encoder.onnx)
  select_queries  CPU       rknn/rtdetr_cpu.py                top-k of the encoder scores + gathers
  decoder         NPU       rknn/decoder_rk3588_fp16.rknn     decoder layers with discrete sampling (gathers,
                                                              no GridSample), heads (from rknn/decoder.onnx)
  postprocess     CPU       rknn/rtdetr_cpu.py                sigmoid, top-K over queries x classes, boxes
                                                              to pixels

The encoder's input is the uint8 RGB image [1,S,S,3] (NHWC): the Normalize of infer_cfg is folded into
the graph as rknn-toolkit2 mean/std. INT8 quantizes the encoder only (calibrated on training images,
rknn/dataset.txt); the decoder stays FP16, because DETR decoders lose almost all accuracy in INT8.

Verification, on the sample images: (1) onnxruntime running the split graphs (traced from the export
form of the model, fuse.py) + the numpy CPU stages matches the eval-mode model as trained, with discrete
sampling (the split is right); (2) the rknn-toolkit2 simulator, chained stage by stage exactly like a
board, matches (1): matched IoU >= 0.9 and
|dscore| <= 0.05 (FP16); INT8-hybrid: at least 90 % matched at IoU >= 0.8 and |dscore| <= 0.1. A miss
fails the export (exit 3).
The cost of discrete sampling for a model trained with grid sampling is measured on the val split.
"""
from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import RuntimeFailure
from . import compare, rtdetr_cpu
from .onnx import convert
from .stages import DECODER_OUTPUTS, ENCODER_OUTPUTS, EncoderStage, decoder_stage, save_static

# INT8-hybrid (encoder INT8, decoder FP16): per-tensor INT8 moves encoder features by a few %, which shifts
# boxes by a pixel or two and scores by up to ~0.1 on a well-trained model, so IoU 0.8 / |dscore| 0.1 per
# detection, and 90 % of them (a near-tied query may still change its class or box) must match
INT8_MATCH = {"iou_min": 0.8, "score_tol": 0.1}
INT8_MIN_MATCHED = 0.9


class RknnExport:
    def __init__(self, job):
        self.job = job
        self.model = job.model                # the model as trained: the reference and the sampling cost
        self.export_model = job.export_model  # its export form (fuse.py): what the split graphs are traced from
        self.S = job.src.input_size
        self.dir = job.dir / "rknn"
        self.quant = job.rknn_quant

    def run(self) -> None:
        job = self.job
        trs = (self.model.transformer, self.export_model.transformer)
        trained = job.trained_sampling
        for tr in trs:
            tr.set_sampling("discrete")
        try:
            self._graphs()
            self._reference()
            self._simulate()
            cost = self._sampling_cost(trained)
        finally:
            for tr in trs:
                tr.set_sampling(trained)
        passed = self.sim_stats["ok"]
        files = sorted(str(p.relative_to(job.dir)) for p in self.dir.rglob("*") if p.is_file()
                       and "calib" not in p.parts)
        job.report.format(
            "rknn", files=files, passed=passed, target="rk3588", quant=self.quant,
            sampling={"trained": trained, "rknn_graph": "discrete"},
            ops_where=[{"stage": s["name"], "runs_on": "NPU" if s["runtime"] == "rknn" else "CPU",
                        "file": s["file"]} for s in self.stages],
            graphs=self.graph_ops,
            check={"what": "rknn-toolkit2 simulator (stage by stage, CPU stages in numpy) vs onnxruntime "
                           "running the same split graphs, detections matched by IoU",
                   "split_vs_paddle": self.split_stats, "simulator_vs_onnx": self.sim_stats,
                   "simulator_raw_max_abs_diff": self.raw_diffs, "build_s": self.build_s},
            note="the simulator's numbers are the evidence (no board attached); the simulator accepts ops "
                 "that the board runs on its CPU, so the graphs were also checked to hold no GridSample/TopK")
        job.report.data["sampling_cost"] = cost
        if trained != "discrete":
            job.report.warn(
                f"the model was trained with {trained} sampling; the RKNN graph uses discrete sampling "
                f"(no GridSample on the RK3588 NPU), which changes its output (see sampling_cost). Recover the "
                f"accuracy with a short discrete fine-tune: python -m toolbox train --init-from "
                f"{job.src.run or 'RUN'} --sampling discrete --epochs 3 ... and export that run")
        job.stages.extend(self.stages)
        st, iso = self.sim_stats, self.sim_stats["decoder_alone"]
        summary = (f"matched {st['matched']}/{st['compared']} (min IoU {st['min_iou']:.3f}, max |dscore| "
                   f"{st['max_score_diff']:.4f}, {st['selection_flips']} selection flips); decoder alone matched "
                   f"{iso['matched']}/{iso['compared']} (min IoU {iso['min_iou']:.3f})")
        job.info(f"rknn: simulator vs onnxruntime: {summary}")
        if not passed:
            need = ("IoU >= 0.9 and |dscore| <= 0.05 for every detection" if self.quant == "fp16" else
                    f"at least {INT8_MIN_MATCHED:.0%} of detections at IoU >= {INT8_MATCH['iou_min']} and "
                    f"|dscore| <= {INT8_MATCH['score_tol']}")
            raise RuntimeFailure(f"RKNN {self.quant.upper()} simulator disagrees with onnxruntime: {summary}; need "
                                 f"{need}, selection flips at most half")

    # ------------------------------------------------------------------ graphs
    def _graphs(self) -> None:
        import paddle

        from .rknn import check_graph

        job, S = self.job, self.S
        self.dir.mkdir(parents=True, exist_ok=True)
        enc = EncoderStage(self.export_model)
        save_static(enc, str(job.work / "encoder" / "model"),
                    [paddle.static.InputSpec([1, 3, S, S], "float32", "images")])
        convert(job.work / "encoder", self.dir / "encoder.onnx", ENCODER_OUTPUTS, log_path=job.log)
        dec = decoder_stage(self.export_model, S)
        tr = self.export_model.transformer
        L = sum(h * w for h, w in dec.spatial_shapes)
        D, Q = int(tr.hidden_dim), int(tr.num_queries)
        shapes = {"target": [1, Q, D], "ref_unact": [1, Q, 4], "memory": [1, L, D]}
        self.dec_inputs = dec.input_names()
        save_static(dec, str(job.work / "decoder" / "model"),
                    [paddle.static.InputSpec(shapes[n], "float32", n) for n in self.dec_inputs])
        convert(job.work / "decoder", self.dir / "decoder.onnx", DECODER_OUTPUTS, log_path=job.log)
        self.graph_ops = {"encoder": check_graph(self.dir / "encoder.onnx"),
                          "decoder": check_graph(self.dir / "decoder.onnx")}
        shutil.copyfile(Path(rtdetr_cpu.__file__), self.dir / "rtdetr_cpu.py")
        C = job.src.num_classes
        t = lambda n, s, dt="float32": {"name": n, "dtype": dt, "shape": s}  # noqa: E731
        enc_out = [t("memory", [1, L, D]), t("enc_memory", [1, L, D]), t("enc_logits", [1, L, C]),
                   t("enc_boxes_unact", [1, L, 4])]
        self.stages = [
            {"name": "encoder", "format": "rknn", "runtime": "rknn", "file": f"rknn/encoder_rk3588_{self.quant}.rknn",
             "onnx": "rknn/encoder.onnx", "quant": self.quant,
             "inputs": [{"name": "images", "dtype": "uint8", "shape": [1, S, S, 3], "layout": "NHWC",
                         "meaning": "RGB image resized to SxS (infer_cfg Resize interp); Normalize is folded into the graph. "
                                    "rknn/encoder.onnx takes the normalised float32 [1,3,S,S] instead"}],
             "outputs": enc_out},
            {"name": "select_queries", "format": "rknn", "runtime": "cpu", "file": "rknn/rtdetr_cpu.py",
             "function": "select_queries", "args": {"num_queries": Q},
             "inputs": enc_out[1:], "outputs": [t("target", [1, Q, D]), t("ref_unact", [1, Q, 4])]},
            {"name": "decoder", "format": "rknn", "runtime": "rknn", "file": "rknn/decoder_rk3588_fp16.rknn",
             "onnx": "rknn/decoder.onnx", "quant": "fp16", "sampling": "discrete",
             "inputs": [t(n, shapes[n]) for n in self.dec_inputs],
             "outputs": [t("pred_logits", [1, Q, C]), t("pred_boxes", [1, Q, 4])]},
            {"name": "postprocess", "format": "rknn", "runtime": "cpu", "file": "rknn/rtdetr_cpu.py",
             "function": "postprocess", "args": {"num_top": job.num_top},
             "inputs": [t("pred_logits", [1, Q, C]), t("pred_boxes", [1, Q, 4]),
                        t("orig_target_sizes", [1, 2], "int64")],
             "outputs": [t("labels", [1, job.num_top], "int64"), t("boxes", [1, job.num_top, 4]),
                         t("scores", [1, job.num_top])]},
        ]

    # ------------------------------------------------------------------ onnxruntime reference of the split
    def _reference(self) -> None:
        import paddle

        from .runtime import StageRunner

        job = self.job
        with paddle.no_grad():
            disc = [t.numpy() for t in job.reference(paddle.to_tensor(job.X), paddle.to_tensor(job.sizes))]
        runner = StageRunner(job.dir, self.stages)
        self.ort_envs = [runner.run({"images": job.X[i:i + 1], "orig_target_sizes": job.sizes[i:i + 1]})
                         for i in range(len(job.X))]
        self.ort_dets = [np.concatenate([e[k] for e in self.ort_envs]) for k in ("labels", "boxes", "scores")]
        self.disc_dets = disc
        self.split_stats = job.match(disc, self.ort_dets, {"iou_min": 0.9, "score_tol": 0.05})
        if not self.split_stats["ok"]:
            raise RuntimeFailure(f"the RKNN split run in onnxruntime disagrees with the model: {self.split_stats} "
                                 f"(a bug in the graph split; please report it)")

    # ------------------------------------------------------------------ simulator
    def _simulate(self) -> None:
        from .rknn import NpuStage
        from .runtime import resize

        job = self.job
        norm = job.infer_cfg_base
        mean = [255.0 * float(m) for m in (norm["mean"] or [0, 0, 0])]
        std = [255.0 * float(s) for s in (norm["std"] or [1, 1, 1])]
        dataset = self._calibration() if self.quant == "int8" else None
        images = [resize(im, self.S, job.infer_cfg_base["interp"])[None] for _, im in job.samples]  # uint8 [1,S,S,3]
        self.build_s = {}

        t0 = time.time()
        enc = NpuStage(self.dir / "encoder.onnx", mean=[mean], std=[std], quant=self.quant, dataset=dataset,
                       log_path=job.log, workdir=job.work)
        try:
            self.build_s["encoder"] = round(time.time() - t0, 2)
            enc_outs = [dict(zip(ENCODER_OUTPUTS, enc.infer([im], ["nhwc"]))) for im in images]
            enc.export(self.dir / f"encoder_rk3588_{self.quant}.rknn")
        finally:
            enc.release()
        Q = int(self.model.transformer.num_queries)
        # decoder inputs: the simulator encoder's own selection (chained, as on a board), then onnxruntime's
        # selection (the decoder's numerics alone, whatever near-tied encoder scores did to the selection)
        chained, isolated, sim_sel = [], [], []
        for e, o in zip(enc_outs, self.ort_envs):
            target, ref = rtdetr_cpu.select_queries(e["enc_memory"], e["enc_logits"], e["enc_boxes_unact"], Q)
            env = {"target": target, "ref_unact": ref, "memory": e["memory"]}
            chained.append([env[n] for n in self.dec_inputs])
            isolated.append([o[n] for n in self.dec_inputs])
            sim_sel.append(_selected(e["enc_logits"], Q))
        t0 = time.time()
        dims = [f.shape[1] for f in chained[0]]
        dec = NpuStage(self.dir / "decoder.onnx", mean=[[0.0] * d for d in dims], std=[[1.0] * d for d in dims],
                       quant="fp16", log_path=job.log, workdir=job.work)
        try:
            self.build_s["decoder"] = round(time.time() - t0, 2)
            dec_chained = [dec.infer(f, ["nchw"] * len(f)) for f in chained]
            dec_isolated = [dec.infer(f, ["nchw"] * len(f)) for f in isolated]
            dec.export(self.dir / "decoder_rk3588_fp16.rknn")
        finally:
            dec.release()
        tol = INT8_MATCH if self.quant == "int8" else {"iou_min": 0.9, "score_tol": 0.05}
        enc_err = max(compare.max_abs_diff(e["enc_logits"], o["enc_logits"]) for e, o in zip(enc_outs, self.ort_envs))
        # a position can trade places at the top-Q boundary only if its score lies within the encoder's own
        # error of the boundary: both runtimes' scores move by up to enc_err, hence 2x
        flip_eps = 2.0 * enc_err
        per_image, flips, isolated_stats = [], 0, []
        for i, o in enumerate(self.ort_envs):
            sizes = job.sizes[i:i + 1]
            sim = [a[0] for a in rtdetr_cpu.postprocess(*dec_chained[i], sizes, job.num_top)]
            ref = [o[k][0] for k in ("labels", "boxes", "scores")]
            # a reference detection whose encoder position the simulator did not select is a selection
            # flip only when that position's encoder score is within flip_eps of the simulator's selection
            # boundary (near-tied scores); otherwise it stays in the match and counts as a miss
            origin = _origins(o["pred_logits"], _selected(o["enc_logits"], Q), job.num_top)
            ref_score = np.asarray(o["enc_logits"], np.float64)[0].max(-1)[origin]
            sim_scores = np.sort(np.asarray(enc_outs[i]["enc_logits"], np.float64)[0].max(-1))[::-1]
            near_boundary = np.abs(ref_score - sim_scores[Q - 1]) <= flip_eps
            kept = np.isin(origin, sim_sel[i]) | ~near_boundary
            order = np.argsort(-ref[2], kind="stable")[:20]
            flips += int((~kept[order]).sum())
            per_image.append(compare.match_detections(tuple(r[kept] for r in ref), tuple(sim), **tol))
            iso = [a[0] for a in rtdetr_cpu.postprocess(*dec_isolated[i], sizes, job.num_top)]
            isolated_stats.append(compare.match_detections(tuple(ref), tuple(iso), **tol))
        chained_stats = compare.merge(per_image).to_dict()
        chained_stats["selection_flips"] = flips
        chained_stats["flip_eps"] = flip_eps
        chained_stats["what"] = ("board-like chain (simulator encoder -> numpy selection -> simulator decoder -> "
                                 "numpy post-process) vs onnxruntime, top 20 per image; detections whose query the "
                                 "simulator's selection did not pick, and whose encoder score lies within flip_eps "
                                 "of the selection boundary, are counted as selection_flips instead of matched")
        iso_stats = compare.merge(isolated_stats).to_dict()
        iso_stats["what"] = "simulator decoder fed onnxruntime's selected queries vs onnxruntime, top 20 per image"
        total = 20 * len(self.ort_envs)
        if self.quant == "int8":
            chained_stats["ok"] = chained_stats["matched"] >= INT8_MIN_MATCHED * chained_stats["compared"]
            iso_stats["ok"] = iso_stats["matched"] >= INT8_MIN_MATCHED * iso_stats["compared"]
        ok = chained_stats["ok"] and iso_stats["ok"] and flips <= total // 2
        self.sim_stats = {**chained_stats, "ok": ok, "decoder_alone": iso_stats,
                          "tolerance": {**tol, **({"min_matched": INT8_MIN_MATCHED} if self.quant == "int8" else {})}}
        self.raw_diffs = {
            **{k: max(compare.max_abs_diff(e[k], o[k]) for e, o in zip(enc_outs, self.ort_envs))
               for k in ("enc_logits", "enc_memory")},
            "pred_logits": max(compare.max_abs_diff(d[0], o["pred_logits"]) for d, o in zip(dec_isolated, self.ort_envs)),
            "pred_boxes": max(compare.max_abs_diff(d[1], o["pred_boxes"]) for d, o in zip(dec_isolated, self.ort_envs)),
            "note": "encoder outputs, and decoder outputs given the same selected queries"}

    def _calibration(self) -> Path:
        """rknn/dataset.txt: `calib_size` training images resized to SxS (rknn/calib/*.png), one a line."""
        from PIL import Image

        from .runtime import load_image, resize

        job = self.job
        paths = job.dataset_images("train", None) or job.dataset_images("val", None)
        if not paths:
            raise RuntimeFailure("INT8 calibration needs training images, and no dataset is known for these "
                                 "weights: export from a --run, or use --rknn-quant fp16")
        rng = random.Random(0)
        chosen = sorted(rng.sample(paths, min(job.calib_size, len(paths))))
        calib = self.dir / "calib"
        calib.mkdir(parents=True, exist_ok=True)
        rel, absolute = [], []
        for i, p in enumerate(chosen):
            out = calib / f"{i:04d}.png"
            Image.fromarray(resize(load_image(p), self.S, self.job.infer_cfg_base["interp"])).save(out)
            rel.append(f"calib/{out.name}")
            absolute.append(str(out.resolve()))
        (self.dir / "dataset.txt").write_text("\n".join(rel) + "\n", encoding="utf-8")
        build_list = job.work / "dataset_abs.txt"
        build_list.write_text("\n".join(absolute) + "\n", encoding="utf-8")
        job.report.data.setdefault("calibration", {}).update(
            {"images": len(chosen), "from": "train split", "dataset_txt": "rknn/dataset.txt",
             "sources": [str(p) for p in chosen]})
        return build_list

    # ------------------------------------------------------------------ discrete vs grid
    def _sampling_cost(self, trained: str) -> dict:
        job = self.job
        cost: dict = {"trained_sampling": trained, "rknn_sampling": "discrete"}
        if trained == "discrete":
            cost["note"] = "the model was trained with discrete sampling: the RKNN graph computes what it learnt"
            return cost
        # on the sample images: the grid model's detections vs the discrete split's
        cost["samples"] = job.match(job.ref_dets, self.ort_dets, {"iou_min": 0.9, "score_tol": 0.05})
        cost["samples"]["what"] = ("detections of the grid-sampling model matched against the discrete RKNN "
                                   "graph's (onnxruntime), top 20 per image")
        if not job.src.dataset_dir:
            cost["val"] = None
            cost["note"] = "no dataset known: mAP not measured"
            return cost
        try:
            from ..data.loader import CocoDetection
            from ..engine.evaluate import run_eval
        except ImportError as e:  # the engine step is optional here
            cost["val"] = None
            cost["note"] = f"mAP not measured: {e}"
            return cost
        ds = CocoDetection(job.src.dataset_dir, "val")
        tr = self.model.transformer
        val: dict = {"images": min(len(ds), job.val_limit or len(ds))}
        for method in ("grid", "discrete"):
            tr.set_sampling(method)
            res = run_eval(self.model, ds, job.src.label_list, self.S, limit=job.val_limit)
            val[method] = {k: res["metrics"].get(k) for k in ("AP", "AP50", "AP75")}
            val[method]["detections"] = res.get("num_detections")
        tr.set_sampling("discrete")
        g, d = val["grid"].get("AP") or 0.0, val["discrete"].get("AP") or 0.0
        val["AP_drop"] = round(g - d, 6)
        cost["val"] = val
        return cost


def _selected(enc_logits: np.ndarray, num_queries: int) -> np.ndarray:
    """Encoder positions [Q] chosen by the query selection (image 0 of the batch)."""
    return rtdetr_cpu.topk(np.asarray(enc_logits, np.float32).max(-1), num_queries)[1][0]


def _origins(pred_logits: np.ndarray, selected: np.ndarray, num_top: int) -> np.ndarray:
    """For each of the K final detections (in post-process order), the encoder position of its query."""
    c = pred_logits.shape[-1]
    _, idx = rtdetr_cpu.topk(rtdetr_cpu.sigmoid(pred_logits).reshape(1, -1), num_top)
    return selected[idx[0] // c]
