"""Score matched frames: precision / recall / F1 at a threshold, AP, latency, per camera and overall."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from training.evaluate.metrics import prf1, voc_ap
from training.evaluate.replay.match import FrameEval

# ------------------------------------------------------------------------------------------ scoring

def score_frames(frames: Sequence[FrameEval], threshold: float = 0.5, curve_points: int = 200) -> dict:
    """P/R/F1 at ``threshold`` and VOC AP over the scored frames (labelled, with an event)."""
    sc = [f for f in frames if f.scored]
    faces = int(sum(f.faces for f in sc))
    if sc:
        scores = np.concatenate([f.dets[:, 4] for f in sc])
        tp = np.concatenate([f.tp for f in sc])
        ign = np.concatenate([f.ignored for f in sc])
    else:
        scores, tp, ign = np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    keep = ~ign
    s, t = scores[keep], tp[keep]
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    ctp = np.cumsum(t)
    cfp = np.cumsum(~t)
    recall = ctp / faces if faces else np.zeros(len(t))
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = voc_ap(recall, precision) if faces and len(t) else (0.0 if faces else None)
    at = s >= threshold
    m = prf1(int(t[at].sum()), int((~t[at]).sum()), faces)
    idx = np.unique(np.linspace(0, len(s) - 1, min(curve_points, len(s))).astype(int)) if len(s) else []
    return {
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "ap": ap,
        "tp": m.tp, "fp": m.fp, "fn": faces - m.tp, "faces": faces,
        "detections": int(at.sum()), "detections_all": len(scores),
        "ignored": int((ign & (scores >= threshold)).sum()),
        "frames_scored": len(sc), "frames_unlabelled": sum(1 for f in frames if not f.missing and f.labels is None),
        "frames_missing": sum(1 for f in frames if f.missing),
        "min_score": float(scores.min()) if len(scores) else None,
        "curve": {"recall": [round(float(recall[i]), 5) for i in idx],
                  "precision": [round(float(precision[i]), 5) for i in idx],
                  "score": [round(float(s[i]), 5) for i in idx]},
    }


def latency_stats(values: Sequence[float | None]) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if not len(v):
        return {"n": 0}
    p = np.percentile(v, [50, 90, 99])
    return {"n": len(v), "mean": round(float(v.mean()), 3), "p50": round(float(p[0]), 3),
            "p90": round(float(p[1]), 3), "p99": round(float(p[2]), 3), "max": round(float(v.max()), 3),
            "min": round(float(v.min()), 3)}


