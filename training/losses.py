"""Detection loss: quality focal loss for scores, GIoU for boxes, smooth L1 for landmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from models.facedet.network import distance_to_box

from .assign import Grid, atss_assign, paired_iou, points_in_boxes


def quality_focal_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    p = logits.sigmoid()
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * (p - target).abs().pow(beta)


def score_distillation(levels, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Knowledge distillation of a teacher's score maps (same strides, same input; `teacher_probs` (B, A) its
    face probability at every point, training/distill/score_maps.py): QFL with it as the soft target at every
    point, background and ignore regions included (the teacher's doubt there is the knowledge), normalised
    by the teacher's total face mass as the score loss is by the number of positives. Zero when the
    student's scores equal the teacher's."""
    s = torch.cat([lv[0][..., 0] for lv in levels], 1)
    t = teacher_probs.detach()
    if s.shape != t.shape:
        raise ValueError(f"teacher and student score maps differ: {tuple(t.shape)} vs {tuple(s.shape)}")
    return quality_focal_loss(s, t).sum() / t.sum().clamp(min=1.0)


def level_grid(points: torch.Tensor, stride: int) -> Grid:
    """(rows, cols, stride) of a level from its row-major cell centres."""
    w = int(points[-1, 0] / stride)
    h = int(points[-1, 1] / stride)
    return (h + 1, w + 1, int(stride))


def detection_loss(levels, targets: dict, anchor_scale: float = 4.0, box_weight: float = 2.0,
                   landmark_weight: float = 0.1, neg_weight: float = 1.0,
                   score_target_power: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """levels: FaceDetNet.forward_levels output; targets: collate() dict. neg_weight scales the score loss of
    background points (QFL already focuses it on the confident ones). A positive's score target is its box's
    IoU ** score_target_power (1: QFL's IoU; lower narrows the spread between well and poorly boxed faces)."""
    logits = torch.cat([lv[0][..., 0] for lv in levels], 1)  # (B, A)
    dist = torch.cat([lv[1] * lv[4] for lv in levels], 1)  # (B, A, 4) px
    has_kps = levels[0][2] is not None
    kps = torch.cat([lv[2] * lv[4] for lv in levels], 1) if has_kps else None
    points = torch.cat([lv[3] for lv in levels], 0)  # (A, 2)
    strides = torch.cat([torch.full((lv[3].shape[0],), float(lv[4]), device=points.device) for lv in levels])
    grids = [level_grid(lv[3], lv[4]) for lv in levels]

    gt, valid, ignore = targets["boxes"], targets["valid"], targets["ignore"]
    with torch.no_grad():
        idx = atss_assign(grids, gt, valid, anchor_scale)  # (B, A)
        safe = idx.clamp(min=0)
        assigned_ignore = ignore.gather(1, safe) & (idx >= 0)
        pos = (idx >= 0) & ~assigned_ignore
        # Background points inside an ignore region teach nothing (maybe an unlabelled face).
        inside_ig = points_in_boxes(grids, gt, ignore & valid)
        cls_weight = (~(assigned_ignore | (inside_ig & ~pos))).float()
        if neg_weight != 1.0:
            cls_weight = torch.where(pos, cls_weight, cls_weight * neg_weight)

    b_idx, a_idx = pos.nonzero(as_tuple=True)
    n_pos = max(1, int(b_idx.numel()))
    pred_boxes = distance_to_box(points[a_idx], dist[b_idx, a_idx])
    gt_boxes = gt[b_idx, safe[b_idx, a_idx]]

    target = torch.zeros_like(logits)
    if b_idx.numel():
        with torch.no_grad():
            q = paired_iou(pred_boxes, gt_boxes).clamp(min=0.01) ** score_target_power
        target[b_idx, a_idx] = q
    loss_cls = (quality_focal_loss(logits, target) * cls_weight).sum() / n_pos

    loss_box = dist.sum() * 0
    if b_idx.numel():
        loss_box = generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="sum") / n_pos
    loss_kps = logits.sum() * 0
    if kps is not None and b_idx.numel():
        gt_k = targets["landmarks"][b_idx, safe[b_idx, a_idx]]  # (P, 10)
        have = ~torch.isnan(gt_k).any(-1)
        if bool(have.any()):
            s = strides[a_idx][have, None]
            pred_k = kps[b_idx, a_idx][have] + points[a_idx][have].repeat(1, 5)
            loss_kps = F.smooth_l1_loss(pred_k / s, gt_k[have] / s, reduction="sum") / n_pos
    total = loss_cls + box_weight * loss_box + landmark_weight * loss_kps
    return total, {
        "loss": float(total.detach()), "cls": float(loss_cls.detach()), "box": float(loss_box.detach()),
        "kps": float(loss_kps.detach()), "pos": float(b_idx.numel()) / max(1, logits.shape[0]),
    }
