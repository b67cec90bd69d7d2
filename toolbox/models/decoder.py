"""RT-DETR's transformer (PaddleDetection's ``transformer``): IoU-aware query selection and a
deformable-attention decoder with iterative box refinement.

Written as three stages that ``forward`` itself chains, so export can cut the graph between them
(the RK3588 runs the first and last on the NPU and the selection on the CPU):

1. ``encode(feats)`` — neck feature maps [B, D_l, H_l, W_l] (fine → coarse) →
   ``memory`` [B, L, D] (input projections, flattened, L = Σ H_l·W_l: the decoder's values),
   ``output_memory`` [B, L, D] (enc_output of the valid-masked memory: the candidate query contents),
   ``enc_logits`` [B, L, C] (enc_score_head) and ``enc_coords_unact`` [B, L, 4]
   (enc_bbox_head + anchor logits; +inf where the anchor is invalid), plus ``spatial_shapes``
   (Python list of (H_l, W_l), fixed by the input size).
2. ``select_queries(output_memory, enc_logits, enc_coords_unact)`` — top-``num_queries`` over each
   anchor's best class logit, then gathers → ``target`` [B, Q, D] (query contents; the learnt
   ``tgt_embed`` instead when learnt_init_query), ``ref_unact`` [B, Q, 4] (reference boxes before the
   sigmoid), ``topk_logits`` [B, Q, C], ``topk_index`` int64 [B, Q].
3. ``decode(target, ref_unact, memory, spatial_shapes, attn_mask=None)`` → ``boxes`` [L', B, Q, 4]
   (sigmoid cxcywh) and ``logits`` [L', B, Q, C]: every decoder layer in training (L' =
   num_decoder_layers), only layer ``eval_idx`` in eval mode (L' = 1; later layers are not run).

Box refinement: layer i predicts a delta added to inverse_sigmoid(reference); the refined box becomes
the next layer's reference, detached in training (the loss of layer i>0 still reaches layer i-1
through the undetached previous box, as in RT-DETR/DINO).
"""
from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .attention import MLP, MultiHeadAttention, bias_init_with_prob, get_activation, linear_init_
from .box_ops import inverse_sigmoid
from .deformable_attention import MSDeformableAttention, normalize_sampling
from .denoising import build_denoising_queries


class TransformerDecoderLayer(nn.Layer):
    """Self-attention (queries + position embedding) → deformable cross attention → FFN; post-norm.
    tgt [B, Q, D], reference_points [B, Q, 1, 4], memory [B, L, D], query_pos_embed [B, Q, D] → [B, Q, D]."""

    def __init__(self, d_model=256, n_head=8, dim_feedforward=1024, dropout=0.0, activation="relu",
                 n_levels=3, n_points=4, sampling="grid", version=1, offset_scale=0.5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head, dropout=dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points, method=sampling,
                                                offset_scale=offset_scale, version=version)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        for lin in (self.linear1, self.linear2):
            linear_init_(lin)
            nn.initializer.XavierUniform()(lin.weight)

    def forward(self, tgt, reference_points, memory, spatial_shapes, attn_mask=None, query_pos_embed=None,
                sampling=None):
        q = k = tgt + query_pos_embed
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt, attn_mask=attn_mask)))
        tgt2 = self.cross_attn(tgt + query_pos_embed, reference_points, memory, spatial_shapes, method=sampling)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


class TransformerDecoder(nn.Layer):
    """The layer stack (``layers.{i}``); the heads live on the transformer (PaddleDetection's layout)."""

    def __init__(self, layers: list, eval_idx: int = -1):
        super().__init__()
        self.layers = nn.LayerList(layers)
        self.num_layers = len(layers)
        self.eval_idx = eval_idx

    @property
    def eval_idx(self) -> int:
        return self._eval_idx

    @eval_idx.setter
    def eval_idx(self, value: int) -> None:
        idx = int(value) if int(value) >= 0 else self.num_layers + int(value)
        if not 0 <= idx < self.num_layers:
            raise ValueError(f"eval_idx {value} is out of range for {self.num_layers} decoder layers")
        self._eval_idx = idx


def _gather_rows(x: paddle.Tensor, index: paddle.Tensor) -> paddle.Tensor:
    """x [B,L,D], index [B,Q,1] → x[b, index[b,q], :] [B,Q,D]. The index is expanded to [B,Q,D] itself:
    take_along_axis(broadcast=True) would also expand x to its own shape, a copy of x in every exported graph."""
    return paddle.take_along_axis(x, index.expand([-1, -1, x.shape[-1]]), axis=1, broadcast=False)


class RTDETRTransformer(nn.Layer):
    """See the module docstring for the stages and tensor shapes.

    Keyword names are PaddleDetection's config keys. Additions: ``sampling`` ('grid' | 'discrete'; alias
    ``cross_attn_method`` 'default' | 'discrete'), ``version`` (2 = RT-DETRv2's checkpoint layout, which
    adds a ``num_points_scale`` buffer per layer), ``offset_scale``. ``num_decoder_points`` may be a list
    (points per level, RT-DETRv2). ``eval_size`` and ``position_embed_type`` are accepted and not needed
    (anchors are computed from the actual feature sizes; the query position head is the only kind).
    """

    def __init__(self, num_classes: int = 80, hidden_dim: int = 256, num_queries: int = 300,
                 position_embed_type: str = "sine", backbone_feat_channels: Sequence[int] = (256, 256, 256),
                 feat_strides: Sequence[int] = (8, 16, 32), num_levels: int = 3,
                 num_decoder_points: int | Sequence[int] = 4, nhead: int = 8, num_decoder_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.0, activation: str = "relu",
                 num_denoising: int = 100, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0,
                 learnt_init_query: bool = True, query_pos_head_inv_sig: bool = False, eval_size=None,
                 eval_idx: int = -1, eps: float = 1e-2, sampling: str | None = None,
                 cross_attn_method: str | None = None, version: int = 1, offset_scale: float = 0.5,
                 in_channels: Sequence[int] | None = None):
        super().__init__()
        if position_embed_type not in ("sine", "learned"):
            raise ValueError(f"position_embed_type must be 'sine' or 'learned', got {position_embed_type!r}")
        feat_channels = list(in_channels if in_channels is not None else backbone_feat_channels)
        if len(feat_channels) > num_levels:
            raise ValueError(f"{len(feat_channels)} feature maps but num_levels={num_levels}")
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.num_levels = num_levels
        self.feat_strides = list(feat_strides)
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.learnt_init_query = learnt_init_query
        self.query_pos_head_inv_sig = query_pos_head_inv_sig
        self.eps = eps
        self.sampling = normalize_sampling(sampling or cross_attn_method or "grid")

        # Input projections: 1x1 conv + BN per given level, 3x3 stride-2 convs for extra levels.
        self.input_proj = nn.LayerList()
        for c in feat_channels:
            self.input_proj.append(nn.Sequential(("conv", nn.Conv2D(c, hidden_dim, 1, bias_attr=False)),
                                                 ("norm", nn.BatchNorm2D(hidden_dim))))
        c = feat_channels[-1]
        for _ in range(num_levels - len(feat_channels)):
            self.input_proj.append(nn.Sequential(("conv", nn.Conv2D(c, hidden_dim, 3, stride=2, padding=1, bias_attr=False)),
                                                 ("norm", nn.BatchNorm2D(hidden_dim))))
            c = hidden_dim

        layers = [TransformerDecoderLayer(hidden_dim, nhead, dim_feedforward, dropout, activation, num_levels,
                                          num_decoder_points, self.sampling, version, offset_scale)
                  for _ in range(num_decoder_layers)]
        self.decoder = TransformerDecoder(layers, eval_idx)

        self.denoising_class_embed = nn.Embedding(
            num_classes, hidden_dim, weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal()))
        if learnt_init_query:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, num_layers=2)

        self.enc_output = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, num_layers=3)
        self.dec_score_head = nn.LayerList([nn.Linear(hidden_dim, num_classes) for _ in range(num_decoder_layers)])
        self.dec_bbox_head = nn.LayerList([MLP(hidden_dim, hidden_dim, 4, num_layers=3)
                                           for _ in range(num_decoder_layers)])
        self._reset_parameters()

    # ------------------------------------------------------------------ init
    def _reset_parameters(self):
        prior = bias_init_with_prob(0.01)
        zero = nn.initializer.Constant(0.0)
        for cls_head in [self.enc_score_head, *self.dec_score_head]:
            linear_init_(cls_head)
            nn.initializer.Constant(prior)(cls_head.bias)
        for box_head in [self.enc_bbox_head, *self.dec_bbox_head]:
            zero(box_head.layers[-1].weight)
            zero(box_head.layers[-1].bias)
        linear_init_(self.enc_output[0])
        nn.initializer.XavierUniform()(self.enc_output[0].weight)
        if self.learnt_init_query:
            nn.initializer.XavierUniform()(self.tgt_embed.weight)
        for lin in self.query_pos_head.layers:
            nn.initializer.XavierUniform()(lin.weight)
        for proj in self.input_proj:
            nn.initializer.XavierUniform()(proj[0].weight)

    # ------------------------------------------------------------------ options
    @property
    def eval_idx(self) -> int:
        """Index of the decoder layer whose output is used in eval mode (later layers are skipped)."""
        return self.decoder.eval_idx

    @eval_idx.setter
    def eval_idx(self, value: int) -> None:
        self.decoder.eval_idx = value

    def set_sampling(self, method: str) -> None:
        """Switch every cross-attention layer between 'grid' and 'discrete' sampling (no new weights)."""
        self.sampling = normalize_sampling(method)
        for layer in self.decoder.layers:
            layer.cross_attn.method = self.sampling

    # ------------------------------------------------------------------ stage 1
    def generate_anchors(self, spatial_shapes, grid_size: float = 0.05):
        """Anchor logits [1, L, 4] (+inf where invalid) and valid mask bool [1, L, 1]: one box per cell,
        centred on it, side grid_size·2^level; valid when all four coordinates lie in (eps, 1 - eps)."""
        anchors = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            gy, gx = paddle.meshgrid(paddle.arange(int(h), dtype="float32"), paddle.arange(int(w), dtype="float32"))
            xy = (paddle.stack([gx, gy], -1).unsqueeze(0) + 0.5) / paddle.to_tensor([float(w), float(h)], dtype="float32")
            wh = paddle.ones_like(xy) * grid_size * (2.0 ** lvl)
            anchors.append(paddle.concat([xy, wh], -1).reshape([-1, int(h) * int(w), 4]))
        anchors = paddle.concat(anchors, 1)
        valid = ((anchors > self.eps) & (anchors < 1 - self.eps)).all(-1, keepdim=True)
        logits = paddle.log(anchors / (1 - anchors))
        logits = paddle.where(valid, logits, paddle.full_like(logits, float("inf")))
        return logits, valid

    def encode(self, feats):
        """Stage 1 (see the module docstring) → (memory, output_memory, enc_logits, enc_coords_unact,
        spatial_shapes)."""
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(feats), self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == len(feats) else proj[-1]))
        spatial_shapes = [(int(p.shape[2]), int(p.shape[3])) for p in proj]
        memory = paddle.concat([p.flatten(2).transpose([0, 2, 1]) for p in proj], axis=1)
        anchors, valid = self.generate_anchors(spatial_shapes)
        # invalid anchors' memory zeroed by a product with the constant mask: the same values as
        # where(valid, memory, 0) for finite memory, without building a zero tensor of memory's size
        # and a select over it in every exported graph
        output_memory = self.enc_output(memory * valid.astype(memory.dtype))
        enc_logits = self.enc_score_head(output_memory)
        enc_coords_unact = self.enc_bbox_head(output_memory) + anchors
        return memory, output_memory, enc_logits, enc_coords_unact, spatial_shapes

    # ------------------------------------------------------------------ stage 2
    def select_queries(self, output_memory, enc_logits, enc_coords_unact):
        """Stage 2 → (target [B,Q,D], ref_unact [B,Q,4], topk_logits [B,Q,C], topk_index [B,Q])."""
        _, topk_index = paddle.topk(enc_logits.max(-1), self.num_queries, axis=1)
        index = topk_index.unsqueeze(-1)
        ref_unact = _gather_rows(enc_coords_unact, index)
        topk_logits = _gather_rows(enc_logits, index)
        if self.learnt_init_query:
            target = self.tgt_embed.weight.unsqueeze(0).tile([paddle.shape(output_memory)[0], 1, 1])
        else:
            target = _gather_rows(output_memory, index)
        return target, ref_unact, topk_logits, topk_index

    # ------------------------------------------------------------------ stage 3
    def decode(self, target, ref_unact, memory, spatial_shapes, attn_mask=None, sampling: str | None = None):
        """Stage 3 → (boxes [L',B,Q,4], logits [L',B,Q,C]); see the module docstring."""
        training = self.training
        out_boxes, out_logits = [], []
        output = target
        ref_detached = F.sigmoid(ref_unact)
        ref_prev = None
        for i, layer in enumerate(self.decoder.layers):
            pos_in = inverse_sigmoid(ref_detached) if self.query_pos_head_inv_sig else ref_detached
            query_pos = self.query_pos_head(pos_in)
            output = layer(output, ref_detached.unsqueeze(2), memory, spatial_shapes, attn_mask, query_pos, sampling)
            delta = self.dec_bbox_head[i](output)
            refined = F.sigmoid(delta + inverse_sigmoid(ref_detached))
            if training:
                out_logits.append(self.dec_score_head[i](output))
                out_boxes.append(refined if i == 0 else F.sigmoid(delta + inverse_sigmoid(ref_prev)))
            elif i == self.decoder.eval_idx:
                out_logits.append(self.dec_score_head[i](output))
                out_boxes.append(refined)
                break
            ref_prev = refined
            ref_detached = refined.detach() if training else refined
        return paddle.stack(out_boxes), paddle.stack(out_logits)

    # ------------------------------------------------------------------ all stages
    def forward(self, feats, targets=None):
        """Eval: → (logits [B,Q,C], boxes [B,Q,4]) of layer eval_idx.
        Training (targets given): → dict with 'boxes'/'logits' [L,B,Q,...] of the matching queries,
        'dn_boxes'/'dn_logits' [L,B,Nd,...] or None, 'enc_boxes'/'enc_logits' [B,Q,...] (selected
        proposals), 'dn_meta' (DenoisingMeta or None)."""
        memory, output_memory, enc_logits, enc_coords_unact, spatial_shapes = self.encode(feats)
        target, ref_unact, topk_logits, _ = self.select_queries(output_memory, enc_logits, enc_coords_unact)
        if not self.training:
            boxes, logits = self.decode(target, ref_unact, memory, spatial_shapes)
            return logits[-1], boxes[-1]

        if targets is None:
            raise ValueError("RTDETRTransformer in training mode needs targets (for the denoising queries)")
        enc_boxes = F.sigmoid(ref_unact)
        dn_embed, dn_ref_unact, attn_mask, dn_meta = build_denoising_queries(
            targets, self.num_classes, self.num_queries, self.denoising_class_embed.weight,
            self.num_denoising, self.label_noise_ratio, self.box_noise_scale)
        # Proposals are detached as decoder inputs: the encoder learns from its own (aux) loss.
        ref_unact = ref_unact.detach()
        if not self.learnt_init_query:
            target = target.detach()
        if dn_embed is not None:
            ref_unact = paddle.concat([dn_ref_unact, ref_unact], axis=1)
            target = paddle.concat([dn_embed, target], axis=1)
        boxes, logits = self.decode(target, ref_unact, memory, spatial_shapes, attn_mask)
        out = {"enc_boxes": enc_boxes, "enc_logits": topk_logits, "dn_meta": dn_meta,
               "dn_boxes": None, "dn_logits": None}
        if dn_meta is not None:
            num_dn = dn_meta.num_split[0]
            out["dn_boxes"], out["boxes"] = boxes[:, :, :num_dn], boxes[:, :, num_dn:]
            out["dn_logits"], out["logits"] = logits[:, :, :num_dn], logits[:, :, num_dn:]
        else:
            out["boxes"], out["logits"] = boxes, logits
        return out


class RTDETRTransformerv2(RTDETRTransformer):
    """RT-DETRv2's transformer: the same network with per-level sampling points, the optional discrete
    sampling, and the ``num_points_scale`` buffers of its checkpoints."""

    def __init__(self, *args, version: int = 2, **kwargs):
        super().__init__(*args, version=version, **kwargs)
