"""ATSS target assignment, vectorised over the batch and all faces (no Python loop per face).

For each face: on every level take the k points closest to its centre, threshold their anchor IoUs
at mean + std, keep those whose point lies in the face (a face smaller than a stride keeps its
nearest cell), and give each point to the face it overlaps most.
"""

from __future__ import annotations

import torch


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., M, 4), b (..., A, 4) xyxy -> (..., M, A)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-6)


def atss_assign(
    points: torch.Tensor,  # (A, 2)
    strides: torch.Tensor,  # (A,)
    level_sizes: list[int],
    gt: torch.Tensor,  # (B, M, 4)
    valid: torch.Tensor,  # (B, M) bool
    anchor_scale: float = 4.0,
    topk: int = 9,
) -> torch.Tensor:
    """Returns (B, A) index of the assigned face, -1 for background."""
    B, M = valid.shape
    A = points.shape[0]
    if M == 0 or not bool(valid.any()):
        return torch.full((B, A), -1, dtype=torch.long, device=points.device)
    half = strides[:, None] * (anchor_scale / 2)
    anchors = torch.cat([points - half, points + half], 1)  # (A, 4)
    ious = box_iou_pairwise(gt, anchors.expand(B, A, 4))  # (B, M, A)
    centre = (gt[..., :2] + gt[..., 2:]) / 2  # (B, M, 2)
    dist = (centre[:, :, None, :] - points[None, None]).pow(2).sum(-1)  # (B, M, A)

    cand = []
    start = 0
    for n in level_sizes:
        k = min(topk, n)
        cand.append(dist[..., start : start + n].topk(k, dim=-1, largest=False).indices + start)
        start += n
    cand = torch.cat(cand, -1)  # (B, M, K)
    cand_iou = ious.gather(-1, cand)
    thr = cand_iou.mean(-1, keepdim=True) + cand_iou.std(-1, keepdim=True)
    is_pos = cand_iou >= thr

    # Point inside the face; faces narrower than a stride count as a stride wide.
    p = points[cand]  # (B, M, K, 2)
    s = strides[cand][..., None]  # (B, M, K, 1)
    half_wh = torch.maximum((gt[..., 2:] - gt[..., :2])[:, :, None, :] / 2, s / 2)
    inside = ((p - centre[:, :, None, :]).abs() <= half_wh).all(-1)
    is_pos &= inside & valid[..., None]

    mask = torch.zeros(B, M, A, dtype=torch.bool, device=points.device)
    mask.scatter_(-1, cand, is_pos)
    score = torch.where(mask, ious, torch.full_like(ious, -1.0))
    best, idx = score.max(1)  # (B, A)
    return torch.where(best >= 0, idx, torch.full_like(idx, -1))
