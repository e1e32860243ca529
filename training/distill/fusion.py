"""Weighted box fusion (WBF, Solovyev et al. 2021) of several teachers' detections of one image.

Boxes of all teachers are visited in descending (score x weight) order; each joins the fused cluster whose
*current fused box* overlaps it most (IoU > ``iou_thr``; IoUs against all clusters computed at once), or
starts a new cluster. A cluster's box (and landmarks, where members have them) is the score*weight
weighted mean of its members. Its score is the weighted mean over **all** teachers of each teacher's best
score in the cluster (a teacher that missed the face contributes 0):

    score = sum_t w_t * max_{b in cluster from t} s_b / sum_t w_t

so a face found by one of three equally weighted teachers at 0.9 scores 0.3, and by all three 0.9.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.evaluate.metrics import iou_xyxy


def weighted_box_fusion(dets: Sequence[np.ndarray], landmarks: Sequence[np.ndarray | None] | None = None,
                        weights: Sequence[float] | None = None, iou_thr: float = 0.55,
                        skip_box_thr: float = 0.0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Fuse per-teacher detections of one image.

    dets[t]: (K_t,5) ``x1 y1 x2 y2 score``; landmarks[t]: (K_t,5,2) or None; weights[t] > 0.
    Returns fused (M,5) sorted by score desc, landmarks (M,5,2) (NaN where no member had any) or None if
    no teacher gave landmarks, and support (M,) int: how many distinct teachers contributed.
    """
    n_t = len(dets)
    w = np.ones(n_t) if weights is None else np.asarray(weights, np.float64)
    if len(w) != n_t:
        raise ValueError("one weight per teacher")
    if landmarks is None:
        landmarks = [None] * n_t
    have_lms = any(lm is not None for lm in landmarks)
    boxes, scores, tids, lms = [], [], [], []
    for t, (d, lm) in enumerate(zip(dets, landmarks, strict=True)):
        d = np.asarray(d, np.float64).reshape(-1, 5)
        m = d[:, 4] >= skip_box_thr
        boxes.append(d[m, :4])
        scores.append(d[m, 4])
        tids.append(np.full(int(m.sum()), t))
        if lm is None:
            lms.append(np.full((int(m.sum()), 5, 2), np.nan))
        else:
            lms.append(np.asarray(lm, np.float64).reshape(-1, 5, 2)[m])
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    scores = np.concatenate(scores) if scores else np.zeros(0)
    tids = np.concatenate(tids).astype(np.int64) if tids else np.zeros(0, np.int64)
    lms = np.concatenate(lms) if lms else np.zeros((0, 5, 2))
    if len(boxes) == 0:
        return np.zeros((0, 5), np.float32), (np.zeros((0, 5, 2), np.float32) if have_lms else None), \
            np.zeros(0, np.int64)

    sw = scores * w[tids]
    order = np.argsort(-sw, kind="stable")
    cap = len(order)
    f_box = np.zeros((cap, 4))  # running fused boxes
    f_wsum = np.zeros(cap)  # sum of score*weight
    f_bsum = np.zeros((cap, 4))  # sum of score*weight*box
    f_lsum = np.zeros((cap, 5, 2))
    f_lw = np.zeros(cap)
    f_best = np.zeros((cap, n_t))  # best score per teacher
    n = 0
    for i in order:
        j = -1
        if n:
            ov = iou_xyxy(boxes[i][None], f_box[:n])[0]
            k = int(np.argmax(ov))
            if ov[k] > iou_thr:
                j = k
        if j < 0:
            j = n
            n += 1
        f_wsum[j] += sw[i]
        f_bsum[j] += sw[i] * boxes[i]
        f_box[j] = f_bsum[j] / max(f_wsum[j], 1e-12)
        if not np.isnan(lms[i]).any():
            f_lsum[j] += sw[i] * lms[i]
            f_lw[j] += sw[i]
        f_best[j, tids[i]] = max(f_best[j, tids[i]], scores[i])
    f_score = (f_best[:n] * w[None, :]).sum(1) / w.sum()
    support = (f_best[:n] > 0).sum(1)
    out = np.concatenate([f_box[:n], f_score[:, None]], 1)
    order = np.argsort(-f_score, kind="stable")
    out_lms = None
    if have_lms:
        with np.errstate(invalid="ignore", divide="ignore"):
            out_lms = np.where(f_lw[:n, None, None] > 0, f_lsum[:n] / f_lw[:n, None, None], np.nan)
        out_lms = out_lms[order].astype(np.float32)
    return out[order].astype(np.float32), out_lms, support[order]
