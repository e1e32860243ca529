"""Small detection metrics shared by the evaluators (IoU from torchvision)."""

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


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,N) plain continuous IoU (no +1): torchvision's box_iou in float64."""
    import torch
    from torchvision.ops import box_iou

    a = torch.from_numpy(np.asarray(a, np.float64).reshape(-1, 4))
    b = torch.from_numpy(np.asarray(b, np.float64).reshape(-1, 4))
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return box_iou(a, b).nan_to_num_(0.0).numpy()


def iou_voc(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(K,N) IoU with the VOC "+1" pixel convention (areas (x2-x1+1)*(y2-y1+1)), as WIDER's evaluation:
    the plain IoU of the boxes grown by one pixel to the right and bottom."""
    grow = np.array([0.0, 0.0, 1.0, 1.0])
    return iou_xyxy(np.asarray(a_xyxy, np.float64).reshape(-1, 4) + grow,
                    np.asarray(b_xyxy, np.float64).reshape(-1, 4) + grow)
