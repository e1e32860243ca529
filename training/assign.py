"""ATSS target assignment, sparse: cost O(faces x candidates), never O(faces x points).

For each face: on every level take the k points closest to its centre (searched in the 5x5 cells
around it, which always hold the 9 nearest), threshold their anchor IoUs at mean + std, keep those
whose point lies in the face (a face smaller than a stride keeps its nearest cell), and give each
point to the face it overlaps most. Crowd images (hundreds of faces) cost no more than a few faces
would with a dense faces x points matrix.
"""

from __future__ import annotations

import torch

Grid = tuple[int, int, int]  # (rows, cols, stride) of one level, points row-major, levels concatenated
SEARCH = 2  # cells searched each side of the centre's cell: 5x5 holds the 9 nearest points


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of matching rows: a, b (..., 4) xyxy -> (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def level_offsets(grids: list[Grid]) -> list[int]:
    out, start = [], 0
    for h, w, _ in grids:
        out.append(start)
        start += h * w
    return out


def candidates(grids: list[Grid], centre: torch.Tensor, topk: int = 9):
    """Per face centre (B, M, 2): flat indices (B, M, K), points (B, M, K, 2) and strides (B, M, K, 1)
    of the `topk` nearest points on every level."""
    idxs, pts, strs = [], [], []
    d = torch.arange(-SEARCH, SEARCH + 1, device=centre.device)
    for (h, w, s), start in zip(grids, level_offsets(grids), strict=True):
        cx = (centre[..., 0] / s).floor().long().clamp(0, w - 1)
        cy = (centre[..., 1] / s).floor().long().clamp(0, h - 1)
        gx = (cx[..., None, None] + d[None, :]).clamp(0, w - 1)  # (B, M, 1, 5)
        gy = (cy[..., None, None] + d[:, None]).clamp(0, h - 1)  # (B, M, 5, 1)
        gx, gy = torch.broadcast_tensors(gx, gy)
        gx, gy = gx.flatten(-2), gy.flatten(-2)  # (B, M, 25); clamping repeats border cells
        p = torch.stack([(gx + 0.5) * s, (gy + 0.5) * s], -1).float()
        dist = (p - centre[..., None, :]).pow(2).sum(-1)
        flat = gy * w + gx
        # repeated (clamped) cells: keep one copy by pushing the others to the back
        earlier = torch.ones(flat.shape[-1], flat.shape[-1], dtype=torch.bool, device=centre.device).tril(-1)
        dup = ((flat[..., :, None] == flat[..., None, :]) & earlier).any(-1)
        dist = torch.where(dup, torch.full_like(dist, float("inf")), dist)
        k = min(topk, h * w)
        sel = dist.topk(k, dim=-1, largest=False).indices
        idxs.append(flat.gather(-1, sel) + start)
        pts.append(p.gather(-2, sel[..., None].expand(*sel.shape, 2)))
        strs.append(torch.full((*sel.shape, 1), float(s), device=centre.device))
    return torch.cat(idxs, -1), torch.cat(pts, -2), torch.cat(strs, -2)


def atss_assign(
    grids: list[Grid],
    gt: torch.Tensor,  # (B, M, 4)
    valid: torch.Tensor,  # (B, M) bool
    anchor_scale: float = 4.0,
    topk: int = 9,
) -> torch.Tensor:
    """Returns (B, A) index of the assigned face, -1 for background."""
    B, M = valid.shape
    A = sum(h * w for h, w, _ in grids)
    device = gt.device
    if M == 0 or not bool(valid.any()):
        return torch.full((B, A), -1, dtype=torch.long, device=device)
    centre = (gt[..., :2] + gt[..., 2:]) / 2  # (B, M, 2)
    cand, p, s = candidates(grids, centre, topk)  # (B, M, K), (B, M, K, 2), (B, M, K, 1)
    anchors = torch.cat([p - s * anchor_scale / 2, p + s * anchor_scale / 2], -1)
    cand_iou = paired_iou(gt[:, :, None, :], anchors)  # (B, M, K)
    thr = cand_iou.mean(-1, keepdim=True) + cand_iou.std(-1, keepdim=True)
    half_wh = torch.maximum((gt[..., 2:] - gt[..., :2])[:, :, None, :] / 2, s / 2)
    inside = ((p - centre[:, :, None, :]).abs() <= half_wh).all(-1)
    is_pos = (cand_iou >= thr) & inside & valid[..., None]

    # A point claimed by several faces goes to the one it overlaps most.
    key = (torch.arange(B, device=device)[:, None, None] * A + cand)[is_pos]
    val = cand_iou[is_pos]
    face = torch.arange(M, device=device).expand(B, M)[..., None].expand_as(cand)[is_pos]
    best = torch.full((B * A,), -1.0, device=device).scatter_reduce(0, key, val, "amax")
    win = val >= best[key]
    idx = torch.full((B * A,), -1, dtype=torch.long, device=device)
    idx[key[win]] = face[win]
    return idx.view(B, A)


def points_in_boxes(grids: list[Grid], boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, A) bool: the point lies inside any of the boxes (B, M, 4) where mask (B, M) is set.
    Each box marks a rectangle of cells through a 2-D difference array: O(B x (M + A))."""
    B = boxes.shape[0]
    out = []
    bi, mi = mask.nonzero(as_tuple=True)
    b = boxes[bi, mi]
    for h, w, s in grids:
        # cells whose centre (i + 0.5) * s lies in [x0, x1]
        x0 = (b[:, 0] / s - 0.5).ceil().long().clamp(0, w)
        x1 = (b[:, 2] / s - 0.5).floor().long().clamp(-1, w - 1) + 1
        y0 = (b[:, 1] / s - 0.5).ceil().long().clamp(0, h)
        y1 = (b[:, 3] / s - 0.5).floor().long().clamp(-1, h - 1) + 1
        ok = (x1 > x0) & (y1 > y0)
        diff = torch.zeros(B, h + 1, w + 1, device=boxes.device)
        one = torch.ones(int(ok.sum()), device=boxes.device)
        bb, x0, x1, y0, y1 = bi[ok], x0[ok], x1[ok], y0[ok], y1[ok]
        diff.index_put_((bb, y0, x0), one, accumulate=True)
        diff.index_put_((bb, y0, x1), -one, accumulate=True)
        diff.index_put_((bb, y1, x0), -one, accumulate=True)
        diff.index_put_((bb, y1, x1), one, accumulate=True)
        out.append((diff.cumsum(1).cumsum(2)[:, :h, :w] > 0.5).reshape(B, h * w))
    return torch.cat(out, 1)
