"""Score threshold, NMS and top-k: one implementation in numpy (serving) and one in torch
(training/evaluation on GPU); tests/test_postprocess.py proves they agree."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Detections:
    """One image's faces in the pixel space they were computed in."""

    boxes: np.ndarray  # (K, 4) xyxy
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray | None = None  # (K, 10) or None
    truncated: int = 0  # faces dropped by max_detections
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, landmarks: bool = True) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, 10), np.float32) if landmarks else None)


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: float = 0.5
    nms_iou: float = 0.4
    pre_nms_topk: int = 5000
    max_detections: int = 750  # WIDER crowds exceed 100 faces; truncation is counted, never silent


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (OpenCV's, C++): kept indices in descending score order. xyxy boxes, IoU without +1."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    sc = scores.astype(np.float64)
    sc = sc - sc.min() + 1.0  # OpenCV wants scores above a threshold >= 0; only their order matters here
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), sc.tolist(), 0.5, float(iou)), np.int64).reshape(-1)
    return keep[np.lexsort((keep, -scores[keep]))]  # by score, ties by index: the order torchvision gives


def postprocess(scores: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None,
                cfg: PostprocessConfig = PostprocessConfig()) -> list[Detections]:
    """Batch of flat network outputs -> per-image Detections (network input pixels)."""
    out = []
    for i in range(scores.shape[0]):
        s = scores[i]
        idx = np.nonzero(s >= cfg.score_threshold)[0]
        if idx.size > cfg.pre_nms_topk:
            idx = idx[np.argsort(-s[idx], kind="stable")[: cfg.pre_nms_topk]]
        b, sc = boxes[i, idx].astype(np.float32), s[idx].astype(np.float32)
        k = None if landmarks is None else landmarks[i, idx].astype(np.float32)
        keep = nms(b, sc, cfg.nms_iou)
        truncated = max(0, keep.size - cfg.max_detections)
        keep = keep[: cfg.max_detections]
        out.append(Detections(b[keep], sc[keep], None if k is None else k[keep], truncated))
    return out


def postprocess_torch(scores, boxes, landmarks, cfg: PostprocessConfig = PostprocessConfig()) -> list[Detections]:
    """Same contract as `postprocess` on torch tensors (any device)."""
    import torch
    from torchvision.ops import nms as tv_nms

    out = []
    for i in range(scores.shape[0]):
        s = scores[i]
        idx = torch.nonzero(s >= cfg.score_threshold).flatten()
        if idx.numel() > cfg.pre_nms_topk:
            idx = idx[torch.argsort(-s[idx], stable=True)[: cfg.pre_nms_topk]]
        b, sc = boxes[i, idx].float(), s[idx].float()
        keep = tv_nms(b, sc, cfg.nms_iou)
        truncated = max(0, keep.numel() - cfg.max_detections)
        keep = keep[: cfg.max_detections]
        k = None if landmarks is None else landmarks[i, idx][keep].float().cpu().numpy()
        out.append(Detections(b[keep].cpu().numpy(), sc[keep].cpu().numpy(), k, truncated))
    return out
