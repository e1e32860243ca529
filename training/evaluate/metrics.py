"""Small, dependency-free detection metrics shared by the evaluators (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class PRF1:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    faces: int

    def to_dict(self) -> dict:
        return asdict(self)


def prf1(tp: int, fp: int, faces: int) -> PRF1:
    """Precision/recall/F1 from counts; 0 (never NaN) where a denominator is 0."""
    tp, fp, faces = int(tp), int(fp), int(faces)
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / faces if faces > 0 else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return PRF1(p, r, f, tp, fp, faces)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC area under the precision envelope (the WIDER FACE / VOC2010+ definition).

    NaN precisions (no proposals at a threshold) are treated as 0 so they cannot poison the envelope.
    """
    rec = np.asarray(recall, np.float64)
    prec = np.nan_to_num(np.asarray(precision, np.float64), nan=0.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: max to the right
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def iou_voc(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(K,N) IoU with the VOC "+1" pixel convention (areas (x2-x1+1)*(y2-y1+1)), as WIDER's evaluation."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        ov = np.where(union > 0, inter / union, 0.0)
    ov[(iw <= 0) | (ih <= 0)] = 0.0
    return ov


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,N) plain continuous IoU (no +1), for fusion / label merging."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
